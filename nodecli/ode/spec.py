"""What to solve with: the solver settings and the gradient method, and the two solves.

`SolveSpec` bundles the two typed objects the config composes (`SolverSettings` and a
`methods.GradientMethod`); it copies nothing. `forward_solve` and `backward_solve` are the
one place that turns them into calls of nodecli's integrator, so every method's forward
solve and every backward (adjoint) solve use the configured settings the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from nodecli.ode.methods import Direct, GradientMethod
from nodecli.ode.settings import SolverSettings
from nodecli.ode.solver import Solution, integrate


@dataclass(frozen=True)
class SolveSpec:
    """The solver settings and the gradient method of an ODE block."""

    solver: SolverSettings = field(default_factory=SolverSettings)
    sensealg: GradientMethod = field(default_factory=Direct)


def forward_solve(
    f: Callable[[float, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    solver: SolverSettings,
    **kwargs: Any,
) -> Solution:
    """Integrate t0 → t1 with the configured solver settings (and F's `autonomous` flag,
    a `CountingField` attribute, which saves host reads in the initial-step heuristic)."""
    autonomous = getattr(f, "autonomous", False)
    return integrate(f, y0, t0, t1, **solver.integrate_kwargs(), autonomous=autonomous, **kwargs)  # type: ignore[arg-type]


def backward_solve(
    f: Callable[[float, Tensor], Tensor],
    a1: Tensor,
    t1: float,
    t0: float,
    spec: SolveSpec,
    norm: Callable[[Tensor], Tensor] | None,
    **kwargs: Any,
) -> Solution:
    """Integrate an adjoint system t1 → t0 with the method's backward tolerances.

    Fixed steps skip the host read that checks the initial state: the forward solve
    checked y, and a non-finite cotangent comes from a loss the training loop checks."""
    settings = spec.sensealg.backward_settings(spec.solver)  # type: ignore[attr-defined]
    return integrate(
        f, a1, t1, t0, norm=norm, check_y0=False, **settings.integrate_kwargs(), **kwargs
    )  # type: ignore[arg-type]
