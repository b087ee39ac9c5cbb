"""`odeint` and `odeint_adjoint`: nodecli's solvers behind torchdiffeq's calling convention.

A user switches from torchdiffeq by changing an import (`from nodecli import odeint`).
The solve is the training path's: every output interval [t_i, t_{i+1}] is one
`sensitivity.solve` call with the chosen gradient method, chained, so values and
gradients are those of the core the `nodecli train` runs use. docs/odeint.md documents
the API and where it differs from torchdiffeq.

Gradients with respect to the output times come from the flow's time derivatives, which
every gradient method can give: ∂y(t_b)/∂t_b = f(t_b, y(t_b)) and the start time enters
as -λ(t_a)ᵀ f(t_a, y(t_a)), λ(t_a) being the gradient that reached y(t_a) through the
solve (torchdiffeq's odeint_adjoint uses the same formulas). `_TimeGradient`
add these terms around each interval, only when t requires grad.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from nodecli.ode.counting import CountingField
from nodecli.ode.methods import METHODS, Adjoint, GradientMethod, method_for
from nodecli.ode.sensitivity import solve
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec
from nodecli.ode.tableaus import TABLEAUS

__all__ = ["odeint", "odeint_adjoint"]

Func = Callable[[Tensor, Tensor], Tensor]

#: torchdiffeq's `options` keys nodecli understands.
OPTIONS = ("step_size", "max_num_steps")
#: torchdiffeq's default bound on steps: none in practice.
MAX_NUM_STEPS = 2**31 - 1


def odeint(
    func: Func,
    y0: Tensor,
    t: Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: Mapping[str, Any] | None = None,
    sensealg: str | GradientMethod = "direct",
    adjoint_params: Iterable[Tensor] | None = None,
) -> Tensor:
    """Solve dy/dt = func(t, y), y(t[0]) = y0, and return y at every time of T.

    T is a 1-D tensor of output times, strictly increasing or strictly decreasing; the
    result has shape (len(t), *y0.shape) and y0's dtype and device. FUNC receives t as a
    0-d tensor of y's dtype and device; what it returns is cast to y's dtype. METHOD is
    any of nodecli's tableaus (default dopri5); OPTIONS takes `step_size` (fixed steps;
    a fixed-step method without it takes one step per output interval, as torchdiffeq)
    and `max_num_steps` (per output interval). SENSEALG is a gradient method's name
    (direct, adjoint, checkpoint, interpolating, gauss) or its options object from
    `nodecli.ode.methods`. Gradients reach y0, t, and the parameters: with `direct`
    every tensor FUNC uses; with the other methods ADJOINT_PARAMS, by default FUNC's
    parameters that require grad (FUNC an nn.Module; a plain function needs
    `adjoint_params`, `()` if it has none, as torchdiffeq's odeint_adjoint).
    """
    y0 = _check_state(y0)
    t, times = _check_times(t, y0)
    gradient = _gradient_method(sensealg)
    spec = SolveSpec(_solver_settings(method, rtol, atol, options), gradient)
    params = _params(func, adjoint_params, gradient)
    counter = CountingField(func)
    return _solve_intervals(counter, y0, t, times, params, spec)


def odeint_adjoint(
    func: Func,
    y0: Tensor,
    t: Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: Mapping[str, Any] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: Mapping[str, Any] | None = None,
    adjoint_params: Iterable[Tensor] | None = None,
) -> Tensor:
    """`odeint` with sensealg=adjoint (the continuous backsolve adjoint), in
    torchdiffeq's `odeint_adjoint` calling convention. The backward solve uses METHOD
    (ADJOINT_METHOD may only repeat it); ADJOINT_OPTIONS takes `norm="seminorm"`."""
    if adjoint_method is not None and adjoint_method != (method or "dopri5"):
        raise ValueError(
            f"adjoint_method={adjoint_method!r}: nodecli's backward solve uses the forward "
            f"method ({method or 'dopri5'!r}); leave adjoint_method unset"
        )
    seminorm = False
    for key, value in (adjoint_options or {}).items():
        if key == "norm" and value in ("seminorm", "default"):
            seminorm = value == "seminorm"
        else:
            raise ValueError(f"adjoint_options: {key}={value!r} unknown; valid: norm='seminorm'")
    gradient = Adjoint(
        seminorm=seminorm,
        adjoint_rtol=None if adjoint_rtol is None else float(adjoint_rtol),
        adjoint_atol=None if adjoint_atol is None else float(adjoint_atol),
    )
    return odeint(
        func,
        y0,
        t,
        rtol=rtol,
        atol=atol,
        method=method,
        options=options,
        sensealg=gradient,
        adjoint_params=adjoint_params,
    )


def _solve_intervals(
    f: CountingField,
    y0: Tensor,
    t: Tensor,
    times: list[float],
    params: list[Tensor],
    spec: SolveSpec,
) -> Tensor:
    """y at every time, one differentiable solve per output interval, chained."""
    ys = [y0]
    time_grad = t.requires_grad and torch.is_grad_enabled()
    fixed_per_interval = spec.solver.step_size is None and not TABLEAUS[spec.solver.method].adaptive
    y = y0
    for i in range(len(times) - 1):
        ta, tb = times[i], times[i + 1]
        interval_spec = spec
        if fixed_per_interval:  # torchdiffeq's default grid for fixed steps: the output times
            interval_spec = replace(spec, solver=replace(spec.solver, step_size=abs(tb - ta)))
        y_in = _TimeGradient.apply(y, t[i], f, ta, -1.0) if time_grad else y
        y = solve(f, y_in, params, ta, tb, interval_spec)
        if time_grad:
            y = _TimeGradient.apply(y, t[i + 1], f, tb, 1.0)
        ys.append(y)
    return torch.stack(ys)


class _TimeGradient(torch.autograd.Function):
    """Identity on y(t); backward adds SIGN · gᵀ f(t, y(t)) as dL/dt: +1 at an interval's end
    (g the gradient reaching y(t_b)), -1 at its start (g = λ(t_a))."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, t: Tensor, f: CountingField, at: float, sign: float) -> Tensor:
        ctx.f, ctx.at, ctx.sign = f, at, sign
        ctx.save_for_backward(y, t)
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        y, t = ctx.saved_tensors
        grad_t = None
        if ctx.needs_input_grad[1]:
            with torch.no_grad():
                grad_t = ctx.sign * (grad * ctx.f(ctx.at, y)).sum().to(t.dtype)
        return grad, grad_t, None, None, None


def _check_state(y0: Any) -> Tensor:
    if not isinstance(y0, Tensor):
        raise TypeError(
            f"y0 must be a tensor, got {type(y0).__name__} (a tuple state: torch.cat its "
            "parts into one tensor)"
        )
    if not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got {y0.dtype}")
    return y0


def _check_times(t: Any, y0: Tensor) -> tuple[Tensor, list[float]]:
    """T as a tensor and its values as floats (one host read per call)."""
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"t must be a non-empty 1-D tensor of times, got shape {tuple(t.shape)}")
    times = [float(x) for x in t.detach().cpu().tolist()]
    if any(x != x or x in (float("inf"), float("-inf")) for x in times):
        raise ValueError("t must hold finite times")
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    if not (all(s > 0 for s in steps) or all(s < 0 for s in steps)):
        raise ValueError("t must be strictly increasing or strictly decreasing")
    return t, times


def _gradient_method(sensealg: str | GradientMethod) -> GradientMethod:
    if isinstance(sensealg, GradientMethod):
        return sensealg
    if isinstance(sensealg, str):
        try:
            return method_for(sensealg)
        except KeyError:
            raise ValueError(
                f"unknown sensealg {sensealg!r}; valid: {', '.join(METHODS)} or an options "
                "object from nodecli.ode.methods"
            ) from None
    raise TypeError(f"sensealg must be a name or a GradientMethod, got {type(sensealg).__name__}")


def _solver_settings(
    method: str | None, rtol: float, atol: float, options: Mapping[str, Any] | None
) -> SolverSettings:
    method = "dopri5" if method is None else method
    if method not in TABLEAUS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(TABLEAUS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown options {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    step_size = options.get("step_size")
    return SolverSettings(
        method=method,
        rtol=float(rtol),
        atol=float(atol),
        step_size=None if step_size is None else float(step_size),
        max_steps=int(options.get("max_num_steps", MAX_NUM_STEPS)),
    )


def _params(
    func: Func, adjoint_params: Iterable[Tensor] | None, gradient: GradientMethod
) -> list[Tensor]:
    """The tensors a custom-backward method differentiates: ADJOINT_PARAMS, else FUNC's
    parameters that require grad (frozen ones get no gradient)."""
    if adjoint_params is not None:
        return list(adjoint_params)
    if isinstance(func, nn.Module):
        return [p for p in func.parameters() if p.requires_grad]
    if gradient.custom_backward:
        raise ValueError(
            f"sensealg={gradient.name} differentiates only the tensors it is given: func is "
            "not an nn.Module, so pass adjoint_params (() if it has none)"
        )
    return []
