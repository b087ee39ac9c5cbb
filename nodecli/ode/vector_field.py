"""Vector-field styles: how a field dy/dt = f(t, y) is written.

`module` calls the field's nn.Module (Lux's NeuralODE container layer); `functional` calls
it as a stateless function whose parameters are passed explicitly (Lux's
explicit-parameter style: the reference MLP as the free functions below, any other module
through `torch.func.functional_call`); `compiled` is the functional field whose whole
solver step goes through torch.compile (nodecli.ode.compiled; the ODE block builds that
step). All wrap the same initialised module, so for the same seed they hold the same
numbers and compute the same trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPVectorField(nn.Module):
    """dy/dt = tanh(W3 tanh(W2 tanh(W1 y + b1) + b2) + b3), autonomous in t."""

    #: f ignores t: the solver may skip work that only matters when it does (solver.integrate).
    autonomous = True

    def __init__(self, latent: int = 20, hidden: int = 10) -> None:
        super().__init__()
        self.l1 = nn.Linear(latent, hidden)
        self.l2 = nn.Linear(hidden, hidden)
        self.l3 = nn.Linear(hidden, latent)

    def forward(self, t: float | Tensor, y: Tensor) -> Tensor:
        # F.linear on the layers' own tensors is exactly what calling the nn.Linear
        # submodules does, minus three nested Module.__call__ per evaluation (measured ~5%
        # of an epoch: the solver makes ~27 evaluations and VJPs per batch).
        l1, l2, l3 = self.l1, self.l2, self.l3
        h = torch.tanh(F.linear(y, l1.weight, l1.bias))
        h = torch.tanh(F.linear(h, l2.weight, l2.bias))
        return torch.tanh(F.linear(h, l3.weight, l3.bias))


def mlp_vector_field(params: Sequence[Tensor], t: float | Tensor, y: Tensor) -> Tensor:
    """The same MLP as a pure function of (W1, b1, W2, b2, W3, b3)."""
    w1, b1, w2, b2, w3, b3 = params
    return torch.tanh(
        F.linear(torch.tanh(F.linear(torch.tanh(F.linear(y, w1, b1)), w2, b2)), w3, b3)
    )


def prepared_mlp_vector_field(
    params: Sequence[Tensor],
) -> Callable[[float | Tensor, Tensor], Tensor]:
    """The same MLP for a 2-D state, with the weights transposed once for a whole solve.

    F.linear on a 2-D input is addmm(b, y, W.t()), so this computes the same numbers, but
    the three transposes (and their autograd nodes) happen once per solve instead of once
    per evaluation. Build it per solve: the transposed views belong to one autograd graph.
    """
    w1, b1, w2, b2, w3, b3 = params
    w1t, w2t, w3t = w1.t(), w2.t(), w3.t()

    def f(t: float | Tensor, y: Tensor) -> Tensor:
        h = torch.tanh(torch.addmm(b1, y, w1t))
        h = torch.tanh(torch.addmm(b2, h, w2t))
        return torch.tanh(torch.addmm(b3, h, w3t))

    return f


class StyledField(nn.Module):
    """A field module NET in one of the layer styles, exposing `f(t, y)` and its parameters.

    Sensitivity methods need both: `f` to integrate and the parameter list to build
    vector-Jacobian products against. The reference MLP (`MLPVectorField`) keeps its
    hand-fused functional form; any other module is called through
    `torch.func.functional_call` in the functional and compiled styles.
    """

    def __init__(self, style: str, net: nn.Module) -> None:
        super().__init__()
        if style not in ("module", "functional", "compiled"):
            raise ValueError(f"unknown layer_style {style!r}; valid: module, functional, compiled")
        self.style = style
        #: NET ignores t (an optional attribute of the field's class; see docs/models.md).
        self.autonomous = bool(getattr(net, "autonomous", False))
        self.is_mlp = isinstance(net, MLPVectorField)
        if not self.is_mlp:
            self.net = net
        elif style == "module":
            self.mlp = net  # the attribute name is the checkpoint's key prefix
        else:
            # Only the tensors are kept; the computation is the free function above.
            mlp = net
            self.params = nn.ParameterList(
                [mlp.l1.weight, mlp.l1.bias, mlp.l2.weight, mlp.l2.bias, mlp.l3.weight, mlp.l3.bias]
            )

    @property
    def module(self) -> nn.Module | None:
        """The field's module, where this style keeps one (all but the functional MLP)."""
        if not self.is_mlp:
            return self.net
        return self.mlp if self.style == "module" else None

    def field_function(self) -> Callable[[Sequence[Tensor], Tensor, Tensor], Tensor]:
        """f(params, t, y) with the parameters passed explicitly (for CompiledStep)."""
        if self.is_mlp:
            return mlp_vector_field
        net = self.net
        names = [name for name, _ in net.named_parameters()]

        def f(params: Sequence[Tensor], t: Tensor, y: Tensor) -> Tensor:
            return torch.func.functional_call(net, dict(zip(names, params, strict=True)), (t, y))

        return f

    def func(self) -> Callable[[float | Tensor, Tensor], Tensor]:
        """The callable f(t, y) to integrate; call once per solve (see prepared_mlp...)."""
        if self.is_mlp:
            if self.style == "module":
                return self.mlp
            return prepared_mlp_vector_field(list(self.params))
        net = self.net
        if self.style == "module":
            return net
        params = dict(net.named_parameters())

        def f(t: float | Tensor, y: Tensor) -> Tensor:
            return torch.func.functional_call(net, params, (t, y))

        return f

    def forward(self, t: float | Tensor, y: Tensor) -> Tensor:
        return self.func()(t, y)
