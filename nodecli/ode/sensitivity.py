"""Sensitivity (gradient) methods: how gradients pass through the ODE solve.

`direct` backpropagates through every operation of nodecli's own solver
(discretise-then-optimise; accepted step sizes are constants, as in diffrax).
`checkpoint` computes the same gradient keeping only the accepted step states
(checkpoint.py). `adjoint` is nodecli's own continuous backsolve adjoint (adjoint.py);
`torchdiffeq_adjoint` (not a sensealg option; used to cross-check) is torchdiffeq's
`odeint_adjoint` with Tsit5 registered. `interpolating` (interpolating.py) and `gauss`
(gauss.py) solve the adjoint backwards with y(t) from the forward dense output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from nodecli.ode.solver import Stepper
from nodecli.ode.spec import SolveSpec, forward_solve

__all__ = ["SENSEALGS", "CountingField", "SolveSpec", "solve"]

SENSEALGS = ("direct", "adjoint", "checkpoint", "interpolating", "gauss")


class CountingField:
    """Wraps f(t, y) and counts its evaluations.

    `calls` counts every evaluation, wherever it happens (an adjoint's backward solve
    calls f too). `backpropagated` counts evaluations that autograd later differentiates
    through (direct): each costs one vector-field backward pass, which we report as one
    backward evaluation.
    """

    def __init__(self, f: Callable[[float | Tensor, Tensor], Tensor]) -> None:
        self.f = f
        self.calls = 0
        self.backpropagated = 0
        self._recorded = 0

    def __call__(self, t: float | Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        out = self.f(t, y)
        if out.requires_grad:
            self._recorded += 1
        return out

    def add(self, n: int) -> None:
        """Count N evaluations made elsewhere (inside a fused, compiled solver step)."""
        self.calls += n
        if torch.is_grad_enabled():
            self._recorded += n

    def snapshot(self) -> tuple[int, int, int]:
        """The counts now, to put back with `restore` after work that must not count."""
        return self.calls, self.backpropagated, self._recorded

    def restore(self, counts: tuple[int, int, int]) -> None:
        self.calls, self.backpropagated, self._recorded = counts

    @property
    def total(self) -> int:
        """Forward evaluations plus backward (vector-Jacobian) evaluations so far."""
        return self.calls + self.backpropagated

    def count_backward_on(self, y: Tensor, recorded_before: int) -> None:
        """When the gradient reaches Y, count the recorded evaluations that produced it."""
        n = self._recorded - recorded_before
        if y.requires_grad and n:

            def hook(grad: Tensor) -> None:
                self.backpropagated += n

            y.register_hook(hook)


def solve(
    f: CountingField,
    y0: Tensor,
    params: Sequence[Tensor],
    t0: float,
    t1: float,
    spec: SolveSpec,
    stepper: Stepper | None = None,
) -> Tensor:
    """y(t1) for dy/dt = f(t, y), differentiable with the chosen sensitivity method.

    `stepper` (layer_style=compiled) is a fused implementation of the adaptive step, used
    where the solve runs through nodecli's own integrator (direct).
    """
    if spec.sensealg == "direct":
        recorded_before = f._recorded
        stepper = stepper if spec.step_size is None else None
        y1 = forward_solve(f, y0, t0, t1, spec, stepper=stepper).y1
        f.count_backward_on(y1, recorded_before)
        return y1
    if spec.sensealg not in _METHODS:
        raise ValueError(f"unknown sensealg {spec.sensealg!r}; valid: {', '.join(SENSEALGS)}")
    params = list(params)
    if not torch.is_grad_enabled() or not (
        y0.requires_grad or any(p.requires_grad for p in params)
    ):
        # Nothing to differentiate (e.g. evaluation): a plain solve, nothing kept.
        with torch.no_grad():
            return forward_solve(f, y0, t0, t1, spec).y1
    params = [p for p in params if p.requires_grad]
    return _METHODS[spec.sensealg](f, y0, params, t0, t1, spec)


def _methods() -> dict[str, Callable[..., Tensor]]:
    from nodecli.ode.adjoint import backsolve_solve
    from nodecli.ode.checkpoint import checkpoint_solve
    from nodecli.ode.gauss import gauss_solve
    from nodecli.ode.interpolating import interpolating_solve

    return {
        "adjoint": backsolve_solve,
        "checkpoint": checkpoint_solve,
        "interpolating": interpolating_solve,
        "gauss": gauss_solve,
        "torchdiffeq_adjoint": torchdiffeq_adjoint,
    }


def torchdiffeq_adjoint(
    f: CountingField, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    from torchdiffeq import odeint_adjoint

    from nodecli.ode.torchdiffeq_tsit5 import register_tsit5

    register_tsit5()
    options: dict[str, object] = {}
    if spec.step_size is not None:
        options["step_size"] = spec.step_size
    else:
        options["max_num_steps"] = spec.max_steps
    adjoint_options = dict(options)
    if spec.seminorm:
        adjoint_options["norm"] = "seminorm"
    t = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    ys = odeint_adjoint(
        f,
        y0,
        t,
        rtol=spec.rtol,
        atol=spec.atol,
        method=spec.method,
        options=options,
        adjoint_rtol=spec.adjoint_rtol or spec.rtol,
        adjoint_atol=spec.adjoint_atol or spec.atol,
        adjoint_options=adjoint_options,
        adjoint_params=tuple(params),
    )
    return ys[-1]


_METHODS = _methods()
