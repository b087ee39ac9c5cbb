"""The classifier around the ODE block: Flatten → Dense(784→20, tanh) → ODE → Dense(20→10)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nodecli.backends.peers import PeerCounter, peer_solver
from nodecli.ode.compiled import CompiledStep
from nodecli.ode.sensitivity import CountingField, solve
from nodecli.ode.spec import SolveSpec
from nodecli.ode.tableaus import TABLEAUS
from nodecli.ode.vector_field import VectorField, mlp_vector_field


class ODEBlock(nn.Module):
    """Integrates dy/dt = f(y) from 0 to t1 and returns only the final state.

    BACKEND picks the library that solves (nodecli.backends): "nodecli" is nodecli's own
    integrator; a peer solves through its own API, evaluating the same counted field.
    """

    def __init__(
        self, field: VectorField, spec: SolveSpec, t1: float = 1.0, backend: str = "nodecli"
    ) -> None:
        super().__init__()
        self.field = field
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
                mlp_vector_field,
                list(field.params),
                solver.method,
                solver.rtol,
                solver.atol,
                on_evaluations=self.counter.add,
            )

    def warm_up(self, batch: int) -> float:
        """Compile what layer_style=compiled compiles, now; returns seconds (0 otherwise)."""
        if self.stepper is None:
            return 0.0
        return self.stepper.warm_up(batch, self.field.params[0].shape[1])

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
) -> NeuralODEClassifier:
    """Build and initialise the classifier; call torch.manual_seed first for reproducibility.

    The initialisation does not depend on BACKEND: every backend starts from the same weights.
    """
    field = VectorField(style, latent, hidden)
    model = NeuralODEClassifier(ODEBlock(field, spec, t1, backend), latent)
    glorot_init_(model)
    return model
