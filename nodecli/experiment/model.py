"""The `model` group: the classifier around the ODE block, and the block itself.

* `mlp` (the reference): Flatten → Dense(784→latent, tanh) → ODE(MLP field) → Dense(latent→10).
* `conv`: torchdiffeq's convolutional ODE-Net (nodecli.experiment.conv).
* `custom`: the reference classifier around a user's field module (any nn.Module with
  forward(t, y) → a tensor of y's shape and dtype), instantiated by the config layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nodecli.backends.peers import PeerCounter, peer_solver
from nodecli.experiment.conv import FEATURE_SIZE, ConvField, ConvODENet
from nodecli.ode.compiled import CompiledStep
from nodecli.ode.sensitivity import CountingField, solve
from nodecli.ode.spec import SolveSpec
from nodecli.ode.tableaus import TABLEAUS
from nodecli.ode.vector_field import MLPVectorField, StyledField

#: The options of the `model` config group (conf/model/<name>.yaml).
MODELS = ("mlp", "conv", "custom")


class ODEBlock(nn.Module):
    """Integrates dy/dt = f(y) from 0 to t1 and returns only the final state.

    BACKEND picks the library that solves (nodecli.backends): "nodecli" is nodecli's own
    integrator; a peer solves through its own API, evaluating the same counted field.
    """

    def __init__(
        self,
        field: StyledField,
        spec: SolveSpec,
        t1: float = 1.0,
        backend: str = "nodecli",
        state_shape: Sequence[int] = (20,),
    ) -> None:
        super().__init__()
        self.field = field
        self.state_shape = tuple(state_shape)  # one sample's state (batch excluded)
        self.spec = spec
        self.t1 = t1
        self.backend = backend
        self.counter = CountingField(field.func(), autonomous=field.autonomous)
        # A peer's solve object is kept as a closure, not a submodule: the parameters stay
        # the field's alone, so checkpoints have the same keys for every backend.
        self.peer: Callable[[Tensor], Tensor] | None = None
        self.peer_counter: PeerCounter | None = None
        if backend != "nodecli":
            self.counter = self.peer_counter = PeerCounter(field.func(), field.autonomous)
            self.peer = peer_solver(backend, spec, field, self.peer_counter, t1)
        # layer_style=compiled: the adaptive step as one compiled graph (nodecli.ode.compiled).
        # Only where nodecli's own integrator is differentiated (`uses_fused_step`: direct)
        # with adaptive steps;
        # elsewhere the compiled style runs its functional field eagerly.
        self.stepper: CompiledStep | None = None
        solver = spec.solver
        if (
            field.style == "compiled"
            and spec.sensealg.uses_fused_step
            and solver.step_size is None
            and TABLEAUS[solver.method].adaptive
        ):
            self.stepper = CompiledStep(
                field.field_function(),
                list(field.parameters()),
                solver.method,
                solver.rtol,
                solver.atol,
                on_evaluations=self.counter.add,
            )

    def warm_up(self, batch: int) -> float:
        """Compile what layer_style=compiled compiles, now; returns seconds (0 otherwise)."""
        if self.stepper is None:
            return 0.0
        like = next(self.field.parameters())
        return self.stepper.warm_up((batch, *self.state_shape), like)

    @property
    def nfe(self) -> int:
        """Vector-field evaluations so far, forward and backward together."""
        return self.counter.total

    def forward(self, y0: Tensor) -> Tensor:
        self.counter.f = self.field.func()  # per solve: functional styles prepare weights
        if self.peer is not None and self.peer_counter is not None:
            mark = self.peer_counter.begin()
            y1 = self.peer(y0)
            self.peer_counter.finish(y1, mark)
            return y1
        return solve(
            self.counter,
            y0,
            list(self.field.parameters()),
            0.0,
            self.t1,
            self.spec,
            stepper=self.stepper,
        )


class NeuralODEClassifier(nn.Module):
    """The reference model; Glorot-uniform weights and zero biases (Lux's defaults)."""

    def __init__(self, ode: ODEBlock, latent: int = 20, n_pixels: int = 784, n_classes: int = 10):
        super().__init__()
        self.encoder = nn.Linear(n_pixels, latent)
        self.ode = ode
        self.head = nn.Linear(latent, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.encoder(x.flatten(1)))
        return self.head(self.ode(h))


def glorot_init_(model: nn.Module) -> None:
    """Glorot-uniform weights, zero biases, in a fixed parameter order (same for all styles)."""
    for p in model.parameters():
        if p.dim() >= 2:  # weight matrices
            nn.init.xavier_uniform_(p)
        else:  # biases
            nn.init.zeros_(p)


def build_model(
    style: str,
    spec: SolveSpec,
    latent: int = 20,
    hidden: int = 10,
    t1: float = 1.0,
    backend: str = "nodecli",
    model: str = "mlp",
    field: nn.Module | None = None,
) -> NeuralODEClassifier | ConvODENet:
    """Build and initialise the classifier; call torch.manual_seed first for reproducibility.

    MODEL names the `model` option; `custom` takes the user's FIELD module (already built,
    with `latent=LATENT`, by nodecli.config.fields), whose own initialisation is kept: only
    the encoder and head get the reference's Glorot init. `conv` keeps PyTorch's default
    init, as torchdiffeq's example. The initialisation does not depend on BACKEND: every
    backend starts from the same weights.
    """
    if model == "conv":
        block = ODEBlock(
            StyledField(style, ConvField(hidden)),
            spec,
            t1,
            backend,
            state_shape=(hidden, FEATURE_SIZE, FEATURE_SIZE),
        )
        return ConvODENet(block, hidden)
    if model == "custom":
        if field is None:
            raise ValueError("model=custom needs the user's field module")
        classifier = NeuralODEClassifier(
            ODEBlock(StyledField(style, field), spec, t1, backend, (latent,)), latent
        )
        glorot_init_(classifier.encoder)
        glorot_init_(classifier.head)
        return classifier
    if model != "mlp":
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    mlp = StyledField(style, MLPVectorField(latent, hidden))
    classifier = NeuralODEClassifier(ODEBlock(mlp, spec, t1, backend, (latent,)), latent)
    glorot_init_(classifier)
    return classifier


def describe_model(name: str, classifier: nn.Module) -> dict[str, str | int]:
    """run.json's `model`: the option NAME, its field's class (`_target_` form) and the
    parameter counts of the field and of the whole classifier."""
    field: StyledField = classifier.ode.field  # type: ignore[assignment]
    net = field.module
    cls = type(net) if net is not None else MLPVectorField  # the functional MLP keeps tensors
    return {
        "name": name,
        "field_target": f"{cls.__module__}.{cls.__qualname__}",
        "field_parameters": sum(p.numel() for p in field.parameters()),
        "field_trainable_parameters": sum(p.numel() for p in field.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in classifier.parameters()),
    }
