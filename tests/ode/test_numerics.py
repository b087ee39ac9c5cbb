"""Numerical edge cases of the solver and the gradient methods (issue 11)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nodecli.ode.methods import METHODS, SENSEALGS, method_for
from nodecli.ode.sensitivity import CountingField, solve
from nodecli.ode.settings import SolverSettings
from nodecli.ode.solver import SolverError, integrate
from nodecli.ode.spec import SolveSpec
from nodecli.ode.tableaus import TABLEAUS


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4)).double()


def grad_of_solve(module: nn.Module, spec: SolveSpec, t0: float, t1: float) -> Tensor:
    """d/d(y0, params) of a fixed functional of y(t1)."""
    params = list(module.parameters())
    y0 = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).view(3, 4).requires_grad_()
    y1 = solve(CountingField(lambda t, y: module(y)), y0, params, t0, t1, spec)
    grads = torch.autograd.grad((y1 * y1).sum() + y1[0].sum(), (y0, *params))
    return torch.cat([g.reshape(-1) for g in grads])


CASES = [(name, {}) for name in SENSEALGS] + [
    (name, {"checkpointing": flag})
    for name in SENSEALGS
    if "checkpointing" in METHODS[name].option_keys()
    for flag in (False, True)
]


@pytest.mark.parametrize(("sensealg", "options"), CASES)
def test_backwards_in_time_matches_direct(sensealg: str, options: dict) -> None:
    """t1 < t0 through the Python API: every method's gradient equals direct's (gauss
    used |h| as its quadrature weight, giving the parameter gradient the wrong sign)."""
    solver = SolverSettings(rtol=1e-9, atol=1e-9)
    field = mlp()
    ref = grad_of_solve(field, SolveSpec(solver, method_for("direct")), 1.0, 0.0)
    got = grad_of_solve(field, SolveSpec(solver, method_for(sensealg, **options)), 1.0, 0.0)
    assert float((got - ref).norm() / ref.norm()) < 1e-6


def test_infinite_first_derivative_is_a_solver_error() -> None:
    """f = 1/y at y = 0 in float16: the initial-step heuristic divided by h0 = 0."""
    y0 = torch.zeros(4, dtype=torch.float16)
    with pytest.raises(SolverError, match="f\\(t0, y0\\) is not finite"):
        integrate(lambda t, y: 1.0 / y, y0, 0.0, 1.0)


def test_infinite_first_derivative_through_interpolating() -> None:
    field = nn.Linear(4, 4).half()
    y0 = torch.zeros(2, 4, dtype=torch.float16, requires_grad=True)
    spec = SolveSpec(SolverSettings(), method_for("interpolating"))
    counter = CountingField(lambda t, y: 1.0 / (y * field.weight[0, 0] * 0))
    with pytest.raises(SolverError, match="not finite"):
        solve(counter, y0, list(field.parameters()), 0.0, 1.0, spec)


@pytest.mark.parametrize("method", list(TABLEAUS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_initial_state_fails_before_solving(method: str, bad: float) -> None:
    tab = TABLEAUS[method]
    step = None if tab.adaptive else 0.1
    y0 = torch.ones(3, 4)
    y0[1, 2] = bad
    calls = []

    def f(t: float, y: Tensor) -> Tensor:
        calls.append(t)
        return -y

    with pytest.raises(SolverError, match="initial state y0 is not finite"):
        integrate(f, y0, 0.0, 1.0, method=method, step_size=step)
    assert len(calls) <= 1  # at most f(t0, y0), read together with y0's norm


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_nonfinite_initial_state_fails_for_every_method(sensealg: str) -> None:
    field = mlp()
    y0 = torch.ones(3, 4, dtype=torch.float64)
    y0[0, 0] = float("nan")
    for solver in (SolverSettings(), SolverSettings(method="rk4", step_size=0.1)):
        spec = SolveSpec(solver, method_for(sensealg))
        counter = CountingField(lambda t, y: field(y))
        with pytest.raises(SolverError, match="initial state y0 is not finite"):
            solve(counter, y0.requires_grad_(), list(field.parameters()), 0.0, 1.0, spec)
        y0 = y0.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_one_read_initial_step_equals_the_two_read_one(dtype: torch.dtype, direction: float):
    """Telling the heuristic that f ignores t saves host reads, never changes the step
    (float16's add rounds twice on this CPU: the guard then keeps the two-read path)."""
    from nodecli.ode.step_size import fused_add_is_reproducible, rms_norm, select_initial_step

    if dtype == torch.float32:  # the training dtype must take the one-read path
        assert fused_add_is_reproducible(torch.device("cpu"), dtype)
    torch.manual_seed(0)
    layer = nn.Linear(20, 20).to(dtype)
    gen = torch.Generator().manual_seed(1)
    for scale in (1e-7, 1e-3, 1.0, 30.0):
        y0 = (torch.randn(64, 20, generator=gen) * scale).to(dtype)
        f = lambda t, y: torch.tanh(layer(y))  # noqa: E731
        f0 = f(0.0, y0)
        args = (f, 0.3, y0, f0, direction, 5, 1e-3, 1e-4, rms_norm)
        with torch.no_grad():
            assert select_initial_step(*args, autonomous=True) == select_initial_step(*args)


def test_fused_add_is_not_claimed_for_float64() -> None:
    from nodecli.ode.step_size import fused_add_is_reproducible

    assert not fused_add_is_reproducible(torch.device("cpu"), torch.float64)
