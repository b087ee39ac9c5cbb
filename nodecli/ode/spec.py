"""The solve settings every sensitivity method shares, and the two solves they make.

One place turns a `SolveSpec` into calls of nodecli's integrator, so the forward solve of
every method and the backward (adjoint) solves use the configured settings the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from nodecli.ode.solver import Solution, integrate


@dataclass(frozen=True)
class SolveSpec:
    """Everything a sensitivity method needs to know about the solve."""

    method: str = "tsit5"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float | None = None
    max_steps: int = 10_000
    sensealg: str = "direct"
    seminorm: bool = False
    checkpointing: bool = False
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None

    @property
    def adjoint_tolerances(self) -> tuple[float, float]:
        """(rtol, atol) of backward solves: the adjoint keys, else the forward ones."""
        rtol = self.adjoint_rtol if self.adjoint_rtol is not None else self.rtol
        atol = self.adjoint_atol if self.adjoint_atol is not None else self.atol
        return rtol, atol


def forward_solve(
    f: Callable[[float, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    spec: SolveSpec,
    **kwargs: Any,
) -> Solution:
    """Integrate t0 → t1 with the configured solver settings."""
    return integrate(
        f,
        y0,
        t0,
        t1,
        method=spec.method,
        rtol=spec.rtol,
        atol=spec.atol,
        step_size=spec.step_size,
        max_steps=spec.max_steps,
        **kwargs,
    )


def backward_solve(
    f: Callable[[float, Tensor], Tensor],
    a1: Tensor,
    t1: float,
    t0: float,
    spec: SolveSpec,
    norm: Callable[[Tensor], Tensor] | None,
    **kwargs: Any,
) -> Solution:
    """Integrate an adjoint system t1 → t0 with the adjoint tolerances."""
    rtol, atol = spec.adjoint_tolerances
    return integrate(
        f,
        a1,
        t1,
        t0,
        method=spec.method,
        rtol=rtol,
        atol=atol,
        step_size=spec.step_size,
        max_steps=spec.max_steps,
        norm=norm,
        **kwargs,
    )
