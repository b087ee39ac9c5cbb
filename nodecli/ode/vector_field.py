"""Vector-field styles: how dy/dt = MLP(y) is written.

`module` keeps the parameters inside an nn.Module (Lux's NeuralODE container layer);
`functional` is a stateless function whose parameters are passed explicitly (Lux's
explicit-parameter style); `compiled` is the functional field whose whole solver step goes
through torch.compile (nodecli.ode.compiled; the ODE block builds that step). All are
built from the same initialised module, so for the same seed they hold the same numbers
and compute the same trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPVectorField(nn.Module):
    """dy/dt = tanh(W3 tanh(W2 tanh(W1 y + b1) + b2) + b3), autonomous in t."""

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


class VectorField(nn.Module):
    """A vector field in one of the layer styles, exposing `f(t, y)` and its parameters.

    Sensitivity methods need both: `f` to integrate and the parameter list to build
    vector-Jacobian products against.
    """

    #: every style is the same MLP of y alone: t is ignored (see solver.integrate).
    autonomous = True

    def __init__(self, style: str, latent: int, hidden: int) -> None:
        super().__init__()
        self.style = style
        mlp = MLPVectorField(latent, hidden)
        if style == "module":
            self.mlp = mlp
        elif style in ("functional", "compiled"):
            # Only the tensors are kept; the computation is the free function above.
            self.params = nn.ParameterList(
                [mlp.l1.weight, mlp.l1.bias, mlp.l2.weight, mlp.l2.bias, mlp.l3.weight, mlp.l3.bias]
            )
        else:
            raise ValueError(f"unknown layer_style {style!r}; valid: module, functional, compiled")

    def func(self) -> Callable[[float | Tensor, Tensor], Tensor]:
        """The callable f(t, y) to integrate; call once per solve (see prepared_mlp...)."""
        if self.style == "module":
            return self.mlp
        return prepared_mlp_vector_field(list(self.params))

    def forward(self, t: float | Tensor, y: Tensor) -> Tensor:
        return self.func()(t, y)
