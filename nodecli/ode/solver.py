"""A lean explicit Runge–Kutta integrator for small neural ODEs.

The reference model is a (128, 20) state pushed through a 3-layer tanh MLP: every tensor
op costs microseconds of framework overhead and almost nothing in FLOPs. So this solver

* keeps times and step sizes as Python floats (no 0-d tensors, no device syncs except the
  one `float()` of the error norm per step),
* folds h·a_ij into scalar `alpha=` arguments of precomputed per-tableau coefficient lists
  (no tableau tensors cast per step) and skips zero coefficients (stages.py),
* builds stage inputs with in-place accumulation on fresh temporaries,
* computes the error norm and the step-size control under `torch.no_grad()`
  (step_size.py: the initial step and torchdiffeq's controller constants).

Backpropagating through `integrate` differentiates the discrete computation with the
accepted step sizes as constants ("discretise then optimise", as in diffrax): the
controller's decisions carry no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nodecli.ode.errors import SolverError, nonfinite_initial_state
from nodecli.ode.field import VectorField
from nodecli.ode.settings import SolverSettings, fixed_step_count
from nodecli.ode.stages import Plan, lincomb, lincomb_zero
from nodecli.ode.stages import plan as make_plan
from nodecli.ode.stages import stages as run_stages
from nodecli.ode.step_size import DFACTOR, EPS, IFACTOR, SAFETY, rms_norm, select_initial_step
from nodecli.ode.tableaus import ADAPTIVE_METHODS, FIXED_METHODS, TABLEAUS

__all__ = ["Solution", "SolverError", "Stepper", "integrate"]

Norm = Callable[[Tensor], Tensor]
# A fused implementation of one embedded RK step (for example a compiled one, see
# nodecli.ode.compiled): (y, f(t, y), t, h) -> (y1, last stage, scaled RMS error norm).
Stepper = Callable[[Tensor, Tensor, float, float], tuple[Tensor, Tensor, Tensor]]


@dataclass
class Solution:
    """Result of `integrate`; trajectory fields are filled only with `record=True`."""

    y1: Tensor
    ts: list[float] = field(default_factory=list)
    ys: list[Tensor] = field(default_factory=list)
    ks: list[list[Tensor]] = field(default_factory=list)
    hs: list[float] = field(default_factory=list)
    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0

    def record_step(self, t: float, y: Tensor, h: float, ks: list[Tensor] | None) -> None:
        """Keep an accepted step's start (and its stages, for dense output)."""
        self.ts.append(t)
        self.ys.append(y)
        self.hs.append(h)
        if ks is not None:
            self.ks.append(ks)


def integrate(
    f: VectorField,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: str = SolverSettings.method,
    rtol: float = SolverSettings.rtol,
    atol: float = SolverSettings.atol,
    step_size: float | None = None,
    max_steps: int = SolverSettings.max_steps,
    first_step: float | None = None,
    record: bool = False,
    record_stages: bool = False,
    norm: Norm | None = None,
    stepper: Stepper | None = None,
    autonomous: bool = False,
    check_y0: bool = True,
) -> Solution:
    """Solve dy/dt = f(t, y), y(t0) = y0, up to t1 (t1 < t0 integrates backwards).

    The defaults are `SolverSettings`'s (written there only).

    Adaptive methods control the local error with `rtol`/`atol` unless `step_size` is
    given; fixed-only methods (rk4, euler, midpoint) require `step_size`. `max_steps`
    bounds the attempted steps (accepted + rejected). `norm` maps the scaled error
    err / (atol + rtol·max(|y0|, |y1|)) to a scalar (default: RMS over all elements).
    `record` keeps the accepted-step grid, states and step sizes; `record_stages` also
    keeps each step's stages for `dense.interpolate`. `stepper` replaces the stage loop
    and error norm of adaptive steps by a fused implementation of the same step (it must
    compute exactly what this loop computes, with the default RMS norm). `autonomous`
    says f ignores t, which lets the initial-step heuristic read the device once.
    A non-finite y0 is a SolverError before any step; fixed steps pay one host read for
    that check, which `check_y0=False` skips where y0 is known finite or its check is
    left to the caller (the adjoint methods' backward solves).
    """
    if method not in TABLEAUS:
        raise ValueError(
            f"unknown solver.method {method!r}; adaptive: {', '.join(ADAPTIVE_METHODS)}; "
            f"fixed-step: {', '.join(FIXED_METHODS)}"
        )
    if max_steps < 1:
        raise ValueError(f"solver.max_steps must be >= 1, got {max_steps}")
    t0, t1 = float(t0), float(t1)
    plan = make_plan(method)
    if step_size is not None:
        if not step_size > 0.0 or not math.isfinite(step_size):
            raise ValueError(f"solver.step_size must be a positive number, got {step_size}")
        return _integrate_fixed(
            f, y0, t0, t1, plan, float(step_size), max_steps, record, record_stages, check_y0
        )
    if not plan.tableau.adaptive:
        raise ValueError(
            f"solver.method={method!r} is fixed-step only: set solver.step_size, or use an "
            f"adaptive method ({', '.join(ADAPTIVE_METHODS)})"
        )
    if not (rtol >= 0.0 and atol >= 0.0 and rtol + atol > 0.0):
        raise ValueError(f"solver.rtol/atol must be >= 0 and not both 0, got {rtol}, {atol}")
    if stepper is not None and (record_stages or norm is not None):
        raise ValueError("a fused stepper keeps no stages and uses the default norm")
    return _integrate_adaptive(
        f,
        y0,
        t0,
        t1,
        plan,
        float(rtol),
        float(atol),
        max_steps,
        first_step,
        record,
        record_stages,
        norm,
        stepper,
        autonomous,
    )


def _integrate_fixed(
    f: VectorField,
    y0: Tensor,
    t0: float,
    t1: float,
    plan: Plan,
    step_size: float,
    max_steps: int,
    record: bool,
    record_stages: bool,
    check_y0: bool = True,
) -> Solution:
    """Constant steps of `step_size`; the last one ends exactly on t1."""
    sol = Solution(y1=y0)
    span = t1 - t0
    if span == 0.0:
        return _finish(sol, y0, t0, record)
    n = fixed_step_count(span, step_size)
    if n > max_steps:
        raise SolverError(
            f"fixed step {step_size:g} needs {n} steps over [{t0:g}, {t1:g}], more than "
            f"solver.max_steps={max_steps}: raise solver.max_steps or solver.step_size"
        )
    # No error estimate will ever read the state: check it here, once per solve.
    if check_y0 and not bool(torch.isfinite(y0).all()):
        raise nonfinite_initial_state()
    h_signed = math.copysign(step_size, span)
    tab = plan.tableau
    # An FSAL method's last stage only seeds the next step, so unless the caller wants the
    # stages, compute y1 from b directly and evaluate f(t1, y1) lazily: saves one NFE.
    stages = plan.stages if (record_stages or not tab.fsal) else plan.stages[:-1]
    use_last_stage_as_y1 = tab.fsal and record_stages
    y, t = y0, t0
    f0: Tensor | None = None
    for i in range(n):
        t_next = t1 if i == n - 1 else t0 + (i + 1) * h_signed
        h = t_next - t
        if f0 is None:
            f0 = f(t, y)
            sol.nfe += 1
        ks, yi = run_stages(f, y, f0, t, t_next, h, stages)
        sol.nfe += len(stages)
        y1 = yi if use_last_stage_as_y1 else lincomb(y, ks, plan.b, h)
        f0 = ks[-1] if use_last_stage_as_y1 else None
        if record:
            sol.record_step(t, y, h, ks if record_stages else None)
        y, t = y1, t_next
        sol.n_steps += 1
    return _finish(sol, y, t1, record)


def _integrate_adaptive(
    f: VectorField,
    y0: Tensor,
    t0: float,
    t1: float,
    plan: Plan,
    rtol: float,
    atol: float,
    max_steps: int,
    first_step: float | None,
    record: bool,
    record_stages: bool,
    norm: Norm | None,
    stepper: Stepper | None = None,
    autonomous: bool = False,
) -> Solution:
    """Embedded-pair error control with torchdiffeq's controller; last step clipped to t1."""
    sol = Solution(y1=y0)
    if t1 == t0:
        return _finish(sol, y0, t0, record)
    tab = plan.tableau
    direction = 1.0 if t1 > t0 else -1.0
    numel = y0.numel()
    inv_sqrt_n = 1.0 / math.sqrt(numel) if numel else 0.0
    norm_fn = norm if norm is not None else rms_norm

    f_start = f(t0, y0)
    sol.nfe += 1
    if first_step is None:
        h_abs = select_initial_step(
            f, t0, y0, f_start.detach(), direction, tab.order, rtol, atol, norm_fn, autonomous
        )
        sol.nfe += 1
    else:
        h_abs = abs(float(first_step))
        if h_abs == 0.0 or not math.isfinite(h_abs):
            raise ValueError(f"solver.first_step must be nonzero and finite, got {first_step}")

    with torch.no_grad():
        abs_y = y0.abs()  # |y| of the current state, reused by the next error tolerance
    y, t = y0, t0
    f0: Tensor | None = f_start
    attempts = 0
    nonfinite = not math.isfinite(h_abs)  # e.g. a NaN state fed to the initial-step probe
    if nonfinite:
        h_abs = 1e-6  # let the loop reject its way to a SolverError rather than hang on NaN
    while direction * (t1 - t) > 0.0:
        hint = (
            " (the error estimate was non-finite: the state may have diverged)" if nonfinite else ""
        )
        if attempts >= max_steps:
            raise SolverError(
                f"{_method_label(plan)} exceeded solver.max_steps={max_steps} at t={t:.6g} "
                f"(accepted {sol.n_steps}, rejected {sol.n_rejected}){hint}: raise "
                "solver.max_steps, loosen solver.rtol/atol, or use a fixed-step method "
                "(solver.step_size)"
            )
        h = direction * h_abs
        t_next = t + h
        if direction * (t1 - t_next) <= 1e-10 * h_abs:
            # Clip the final step to land exactly on t1 (no overshoot + interpolation as in
            # torchdiffeq); also stretch a step that would leave only a rounding-size sliver.
            h, t_next = t1 - t, t1
        elif t_next == t or h_abs < 4.0 * EPS * abs(t):
            raise SolverError(
                f"{_method_label(plan)} step size underflow (h={h:.3g}) at t={t:.6g}{hint}: "
                "the ODE may be stiff or diverging; loosen solver.rtol/atol or use a "
                "fixed-step method (solver.step_size)"
            )
        if f0 is None:  # only for non-FSAL tableaus
            f0 = f(t, y)
            sol.nfe += 1
        sol.nfe += len(plan.stages)
        attempts += 1
        if stepper is not None:
            y1, k_last, err_norm = stepper(y, f0, t, h)
            ks = [k_last]
            ratio = float(err_norm)
        else:
            ks, yi = run_stages(f, y, f0, t, t_next, h, plan.stages)
            y1 = yi if tab.fsal else lincomb(y, ks, plan.b, h)

            with torch.no_grad():
                err = lincomb_zero(ks, plan.b_err, h)
                abs_y1 = y1.abs()
                tol = torch.maximum(abs_y, abs_y1).mul_(rtol).add_(atol)
                err.div_(tol)
                if norm is None:
                    ratio = float(torch.linalg.vector_norm(err)) * inv_sqrt_n
                else:
                    ratio = float(norm(err))
        if attempts == 1 and not math.isfinite(ratio) and first_step is not None:
            # The initial-step heuristic (which checks y0) was skipped: a non-finite first
            # error may be the state's own; reading y0 only on this failure path is free.
            if not bool(torch.isfinite(y0).all()):
                raise nonfinite_initial_state()

        if ratio <= 1.0:
            if record:
                sol.record_step(t, y, h, ks if record_stages else None)
            y, t = y1, t_next
            if stepper is None:
                abs_y = abs_y1
            f0 = ks[-1] if tab.fsal else None
            sol.n_steps += 1
        else:
            sol.n_rejected += 1

        # Next |h| (torchdiffeq's _optimal_step_size): never shrink after an accepted step.
        if ratio == 0.0:
            factor = IFACTOR
        elif math.isfinite(ratio):
            floor = 1.0 if ratio < 1.0 else DFACTOR
            factor = min(IFACTOR, max(SAFETY * ratio**-plan.inv_order, floor))
        else:
            # NaN/inf error: shrink hard; the caller owns NaN handling, we only terminate.
            nonfinite = True
            factor = DFACTOR
        h_abs = abs(h) * factor
    return _finish(sol, y, t1, record)


def _finish(sol: Solution, y: Tensor, t: float, record: bool) -> Solution:
    sol.y1 = y
    if record:
        sol.ts.append(t)
        sol.ys.append(y)
    return sol


def _method_label(plan: Plan) -> str:
    """'solver.method=<name>' for error messages."""
    return f"solver.method={plan.tableau.name!r}"
