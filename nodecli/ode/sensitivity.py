"""Solving with a gradient method: the registry of implementations, and `solve`.

The method is the typed options object in `SolveSpec.sensealg` (nodecli.ode.methods):
`solve` asks it for its implementation and capabilities, never for its name. Methods:
`direct` (direct.py) backpropagates through nodecli's solver; `checkpoint`
(checkpoint.py) gives the same gradient keeping only accepted step states; `adjoint`
(adjoint.py) is the continuous backsolve adjoint; `interpolating` (interpolating.py) and
`gauss` (gauss.py) solve the adjoint backwards with y(t) from the forward dense output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from nodecli.ode.adjoint import backsolve_solve
from nodecli.ode.checkpoint import checkpoint_solve
from nodecli.ode.counting import CountingField
from nodecli.ode.direct import direct_solve
from nodecli.ode.gauss import gauss_solve
from nodecli.ode.interpolating import interpolating_solve
from nodecli.ode.methods import (
    SENSEALGS,
    Adjoint,
    Checkpoint,
    Direct,
    Gauss,
    GradientMethod,
    Interpolating,
)
from nodecli.ode.solver import Stepper
from nodecli.ode.spec import SolveSpec, forward_solve

__all__ = ["IMPLEMENTATIONS", "SENSEALGS", "CountingField", "SolveSpec", "solve"]

# (f, y0, params, t0, t1, spec[, stepper]) -> y(t1), differentiable w.r.t. y0 and params.
SolveFn = Callable[..., Tensor]

#: The solve function of each gradient method's options class (nodecli.ode.methods).
IMPLEMENTATIONS: dict[type[GradientMethod], SolveFn] = {
    Direct: direct_solve,
    Adjoint: backsolve_solve,
    Checkpoint: checkpoint_solve,
    Interpolating: interpolating_solve,
    Gauss: gauss_solve,
}


def implementation(method: GradientMethod) -> SolveFn:
    """The solve function of METHOD's options class (exactly its class: a subclass with
    other behaviour registers its own)."""
    try:
        return IMPLEMENTATIONS[type(method)]
    except KeyError:
        raise TypeError(f"no implementation registered for {type(method).__name__}") from None


def solve(
    f: CountingField,
    y0: Tensor,
    params: Sequence[Tensor],
    t0: float,
    t1: float,
    spec: SolveSpec,
    stepper: Stepper | None = None,
) -> Tensor:
    """y(t1) for dy/dt = f(t, y), differentiable with the chosen gradient method.

    `stepper` (layer_style=compiled) is a fused implementation of the adaptive step, for
    methods that differentiate nodecli's own integrator (`uses_fused_step`).
    """
    method = spec.sensealg
    solve_fn = implementation(method)
    if not method.custom_backward:  # autograd records the solve itself
        return solve_fn(f, y0, params, t0, t1, spec, stepper=stepper)
    params = list(params)
    if not torch.is_grad_enabled() or not (
        y0.requires_grad or any(p.requires_grad for p in params)
    ):
        # Nothing to differentiate (e.g. evaluation): a plain solve, nothing kept.
        with torch.no_grad():
            return forward_solve(f, y0, t0, t1, spec.solver).y1
    params = [p for p in params if p.requires_grad]
    return solve_fn(f, y0, params, t0, t1, spec)
