"""Tests of nodecli's Runge–Kutta core: orders, tolerances, torchdiffeq parity, gradients.

Order tests use the Kepler two-body problem (a coupled nonlinear system, so order
conditions that scalar problems cannot tell apart are exercised) whose exact solution is
known through Kepler's equation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchdiffeq
from torch import Tensor

from nodecli.ode.dense import interpolate
from nodecli.ode.solver import Solution, SolverError, integrate
from nodecli.ode.tableaus import ADAPTIVE_METHODS, FIXED_METHODS, TABLEAUS, dense_weights
from nodecli.ode.torchdiffeq_tsit5 import Tsit5Solver, register_tsit5

ECC = 0.3


def kepler_exact(t: float, e: float = ECC) -> Tensor:
    """Exact state (q, p) at time t of the orbit with a=1, GM=1 starting at perihelion."""
    big_e = t
    for _ in range(50):  # Newton on Kepler's equation E - e sin E = t
        big_e -= (big_e - e * math.sin(big_e) - t) / (1.0 - e * math.cos(big_e))
    b, r = math.sqrt(1.0 - e * e), 1.0 - e * math.cos(big_e)
    return torch.tensor(
        [math.cos(big_e) - e, b * math.sin(big_e), -math.sin(big_e) / r, b * math.cos(big_e) / r],
        dtype=torch.float64,
    )


def kepler(t: float | Tensor, y: Tensor) -> Tensor:
    q, p = y[..., :2], y[..., 2:]
    r3 = (q * q).sum(-1, keepdim=True) ** 1.5
    return torch.cat([p, -q / r3], dim=-1)


def riccati(t: float | Tensor, y: Tensor) -> Tensor:
    """y' = -2 t y², nonautonomous and elementwise: y(t) = y0 / (1 + y0 t²)."""
    return -2.0 * t * y * y


def riccati_exact(y0: Tensor, t: float) -> Tensor:
    return y0 / (1.0 + y0 * t * t)


def slope(hs: list[float], errs: list[float]) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# --------------------------------------------------------------------------- orders
@pytest.mark.parametrize(
    ("method", "ns", "lo", "hi"),
    [
        ("euler", [100, 200, 400, 800], 0.85, 1.15),
        ("midpoint", [20, 40, 80, 160], 1.8, 2.2),
        ("bosh3", [10, 20, 40, 80], 2.7, 3.3),
        ("rk4", [10, 20, 40, 80], 3.7, 4.3),
        ("tsit5", [48, 64, 96, 128], 4.6, 5.5),
        ("dopri5", [64, 96, 128, 192], 4.6, 5.5),
        # Large-ish steps: at smaller ones the 8th-order error sinks into round-off.
        ("dopri8", [10, 12, 16, 20], 7.5, 8.8),
    ],
)
def test_fixed_step_convergence_order(method: str, ns: list[int], lo: float, hi: float) -> None:
    t1 = 2.0
    y0, exact = kepler_exact(0.0), kepler_exact(t1)
    errs = [
        (integrate(kepler, y0, 0.0, t1, method=method, step_size=t1 / n).y1 - exact)
        .abs()
        .max()
        .item()
        for n in ns
    ]
    order = slope([t1 / n for n in ns], errs)
    assert lo < order < hi, (method, order, errs)


@pytest.mark.parametrize(
    ("method", "expected_slope"),
    # Local error of the interpolant is O(h^(q+1)) for a q-th order dense output.
    # dopri8: the quartic through y0, f0, y(½), y1, f1 (torchdiffeq's), O(h^5).
    [("tsit5", 5.0), ("dopri5", 5.0), ("bosh3", 4.0), ("dopri8", 5.0), ("rk4", 4.0)],
)
def test_dense_output_order(method: str, expected_slope: float) -> None:
    t0 = 0.5
    y0 = kepler_exact(t0)
    hs = [0.1, 0.05, 0.025, 0.0125]
    errs = []
    for h in hs:
        sol = integrate(
            kepler, y0, t0, t0 + h, method=method, step_size=h, record=True, record_stages=True
        )
        f1 = kepler(t0 + h, sol.y1)  # only the Hermite fallback of non-FSAL rk4 needs it
        errs.append(
            max(
                (
                    interpolate(TABLEAUS[method], th, y0, sol.ks[0], h, f1=f1)
                    - kepler_exact(t0 + th * h)
                )
                .abs()
                .max()
                .item()
                for th in (0.3, 0.5, 0.77)
            )
        )
    order = slope(hs, errs)
    assert expected_slope - 0.4 < order < expected_slope + 0.5, (method, order, errs)


def test_dense_output_endpoints_and_torchdiffeq_mid() -> None:
    for tab in TABLEAUS.values():
        if tab.dense is not None:
            assert dense_weights(tab, 0.0) == pytest.approx([0.0] * tab.n_stages, abs=0)
            assert dense_weights(tab, 1.0) == pytest.approx(tab.b, abs=1e-14)
    dpm = torchdiffeq._impl.dopri5.DPS_C_MID.tolist()
    assert dense_weights(TABLEAUS["dopri5"], 0.5) == pytest.approx(dpm, abs=1e-15)


def test_dense_weights_are_the_polynomials_summed_in_order_and_cached_by_tableau() -> None:
    """The cached fast path gives the plain Horner-free sum Σ_p c_p θ^p, in order, bit for
    bit; an unregistered tableau under a registered name never reads that cache."""
    tab = TABLEAUS["tsit5"]
    assert tab.dense is not None
    for theta in (0.0, 0.1234567, 1 / 3, 0.5, 0.987654321, 1.0):
        plain = tuple(sum(c * theta**p for p, c in enumerate(poly)) for poly in tab.dense)
        assert dense_weights(tab, theta) == plain
        assert dense_weights(tab, theta) == plain  # a cache hit: the same tuple
    impostor = dataclasses.replace(TABLEAUS["dopri5"], name="tsit5")
    assert dense_weights(impostor, 0.5) == dense_weights(TABLEAUS["dopri5"], 0.5)


def test_recorded_stages_interpolate_whole_trajectory() -> None:
    t1 = 3.0
    sol = integrate(
        kepler, kepler_exact(0.0), 0.0, t1, rtol=1e-9, atol=1e-9, record=True, record_stages=True
    )
    assert len(sol.ks) == len(sol.hs) == sol.n_steps == len(sol.ts) - 1 == len(sol.ys) - 1
    for t, y, ks, h in zip(sol.ts, sol.ys, sol.ks, sol.hs, strict=False):
        mid = interpolate(TABLEAUS["tsit5"], 0.5, y, ks, h)
        assert (mid - kepler_exact(t + 0.5 * h)).abs().max().item() < 1e-7


# ------------------------------------------------------------------- adaptive accuracy
def test_tsit5_agrees_with_dopri5_at_tight_tolerance() -> None:
    y0, exact = kepler_exact(0.0), kepler_exact(5.0)
    a = integrate(kepler, y0, 0.0, 5.0, method="tsit5", rtol=1e-10, atol=1e-10)
    b = integrate(kepler, y0, 0.0, 5.0, method="dopri5", rtol=1e-10, atol=1e-10)
    assert (a.y1 - b.y1).abs().max().item() < 1e-8
    assert (a.y1 - exact).abs().max().item() < 1e-8
    # f(t0, y0) + one probe for the initial step + 6 new stages per attempt (FSAL).
    assert a.nfe == 2 + 6 * (a.n_steps + a.n_rejected)


@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_adaptive_meets_tolerance(method: str) -> None:
    y0, exact = kepler_exact(0.0), kepler_exact(2.0)
    err = integrate(kepler, y0, 0.0, 2.0, method=method, rtol=1e-7, atol=1e-7).y1 - exact
    assert err.abs().max().item() < 1e-5


class _MLPField(torch.nn.Module):
    """A small tanh MLP; records torchdiffeq's accepted step sizes via its callback hook."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = torch.nn.Linear(6, 8), torch.nn.Linear(8, 6)
        self.accepted: list[float] = []

    def forward(self, t: float | Tensor, y: Tensor) -> Tensor:
        return 2.0 * torch.tanh(self.l2(torch.tanh(self.l1(y))))

    def callback_accept_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.accepted.append(float(dt))


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "bosh3"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_step_sizes_and_result_match_torchdiffeq(method: str, tol: float) -> None:
    """Same initial step and controller as torchdiffeq; only the final step differs (we clip
    it to t1, torchdiffeq oversteps and interpolates back)."""
    register_tsit5()
    torch.manual_seed(0)
    f = _MLPField().double()
    y0 = torch.randn(16, 6, dtype=torch.float64)
    with torch.no_grad():
        ref = torchdiffeq.odeint(
            f, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=tol, atol=tol, method=method
        )[-1]
        sol = integrate(f, y0, 0.0, 1.0, method=method, rtol=tol, atol=tol, record=True)
    assert sol.n_steps == len(f.accepted)
    assert sol.hs[:-1] == pytest.approx(f.accepted[:-1], rel=1e-9)
    if method != "bosh3":  # torchdiffeq's bosh3 interpolant (midpoint y0 + h/2 k2) is crude
        assert (sol.y1 - ref).abs().max().item() < 30 * tol


@pytest.mark.parametrize("method", ["tsit5", "dopri5"])
def test_close_to_torchdiffeq_on_kepler(method: str) -> None:
    register_tsit5()
    y0 = kepler_exact(0.0)
    ref = torchdiffeq.odeint(
        kepler,
        y0,
        torch.tensor([0.0, 4.0], dtype=torch.float64),
        rtol=1e-8,
        atol=1e-8,
        method=method,
    )[-1]
    ours = integrate(kepler, y0, 0.0, 4.0, method=method, rtol=1e-8, atol=1e-8).y1
    assert (ours - ref).abs().max().item() < 1e-6


# ------------------------------------------------------------ torchdiffeq registration
def test_register_tsit5_odeint_and_adjoint() -> None:
    assert register_tsit5() is Tsit5Solver
    assert register_tsit5() is Tsit5Solver  # idempotent
    tab = Tsit5Solver.tableau
    assert Tsit5Solver.mid.tolist() == pytest.approx(dense_weights(TABLEAUS["tsit5"], 0.5))
    assert tab.c_sol.tolist() == list(TABLEAUS["tsit5"].b)

    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    y0 = kepler_exact(0.0)
    ys = torchdiffeq.odeint(kepler, y0, ts, rtol=1e-9, atol=1e-9, method="tsit5")
    for t, y in zip(ts.tolist(), ys, strict=True):
        assert (y - kepler_exact(t)).abs().max().item() < 1e-7

    # Adjoint gradient of y(1) for y' = -y² (y = y0/(1+y0 t)): dy1/dy0 = 1/(1+y0)².
    y0r = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    out = torchdiffeq.odeint_adjoint(
        lambda t, y: -y * y,
        y0r,
        ts[:2],
        rtol=1e-9,
        atol=1e-9,
        method="tsit5",
        adjoint_params=(),
    )[-1]
    out.sum().backward()
    assert out.detach() == pytest.approx((y0r / (1 + y0r)).detach().tolist(), abs=1e-7)
    assert y0r.grad is not None
    assert y0r.grad.tolist() == pytest.approx((1 / (1 + y0r.detach()) ** 2).tolist(), abs=1e-7)


# ----------------------------------------------------------------- directions, shapes
@pytest.mark.parametrize("step_size", [None, 0.05])
def test_backward_integration(step_size: float | None) -> None:
    y2 = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)  # state at t=2
    sol = integrate(riccati, y2, 2.0, 0.0, rtol=1e-9, atol=1e-9, step_size=step_size, record=True)
    y0 = y2 / (1.0 - 4.0 * y2)  # invert y(2) = y0 / (1 + 4 y0)
    assert (sol.y1 - y0).abs().max().item() < 1e-7
    assert sol.ts[0] == 2.0 and sol.ts[-1] == 0.0
    assert all(h < 0 for h in sol.hs)
    assert sum(sol.hs) == pytest.approx(-2.0)
    # Kepler back to perihelion.
    back = integrate(kepler, kepler_exact(3.0), 3.0, 0.0, rtol=1e-10, atol=1e-10)
    assert (back.y1 - kepler_exact(0.0)).abs().max().item() < 1e-8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["tsit5", "rk4"])
def test_nd_state(dtype: torch.dtype, method: str) -> None:
    torch.manual_seed(1)
    y0 = (torch.rand(2, 3, 4, 4) + 0.5).to(dtype)
    step = 0.02 if method == "rk4" else None
    sol = integrate(riccati, y0, 0.0, 1.5, method=method, rtol=1e-6, atol=1e-6, step_size=step)
    assert sol.y1.shape == y0.shape and sol.y1.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-5
    assert (sol.y1 - riccati_exact(y0, 1.5)).abs().max().item() < tol


def test_record_grid_lands_on_t1_and_trivial_span() -> None:
    sol = integrate(kepler, kepler_exact(0.0), 0.0, 1.0, method="rk4", step_size=0.3, record=True)
    assert sol.ts == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0]) and sol.ts[-1] == 1.0
    assert sol.hs[-1] == pytest.approx(0.1) and sol.nfe == 4 * 4 and sol.n_steps == 4
    assert sol.ys[-1] is sol.y1
    # 1/0.1 rounds to 10.000000000000002: still ten steps, not an extra sliver.
    assert (
        integrate(kepler, kepler_exact(0.0), 0.0, 1.0, method="euler", step_size=0.1).n_steps == 10
    )
    y0 = kepler_exact(0.0)
    same = integrate(kepler, y0, 1.0, 1.0)
    assert same.y1 is y0 and same.nfe == 0


def test_fixed_step_fsal_bookkeeping() -> None:
    y0 = kepler_exact(0.0)
    plain = integrate(kepler, y0, 0.0, 1.0, method="tsit5", step_size=0.1)
    staged = integrate(
        kepler, y0, 0.0, 1.0, method="tsit5", step_size=0.1, record=True, record_stages=True
    )
    # Without stages the FSAL stage is not evaluated after the last step.
    assert plain.nfe == 6 * 10 and staged.nfe == 1 + 6 * 10
    assert torch.equal(plain.y1, staged.y1)
    assert all(len(ks) == 7 for ks in staged.ks)


# ------------------------------------------------------------------------- gradients
def _field(w: Tensor) -> Callable[[float, Tensor], Tensor]:
    return lambda t, y: torch.tanh(y @ w) + 0.1 * t


@pytest.mark.parametrize("method", ["tsit5", "rk4", "midpoint"])
def test_gradcheck_fixed_steps(method: str) -> None:
    torch.manual_seed(2)
    y0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()

    def fn(y0: Tensor, w: Tensor) -> Tensor:
        return integrate(_field(w), y0, 0.0, 1.0, method=method, step_size=0.3).y1

    assert torch.autograd.gradcheck(fn, (y0, w))


def test_adaptive_gradient_is_gradient_of_discrete_steps() -> None:
    """Backprop through an adaptive solve equals the gradient of replaying its accepted steps
    with fixed sizes: step sizes are constants (discretise-then-optimise)."""
    torch.manual_seed(3)
    y0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
    sol = integrate(_field(w), y0, 0.0, 2.0, rtol=1e-4, atol=1e-4, record=True)
    assert sol.n_steps >= 3
    g_adaptive = torch.autograd.grad(sol.y1.square().sum(), (y0, w))

    def replay(y0: Tensor, w: Tensor) -> Tensor:
        y = y0
        for t, t_next in zip(sol.ts[:-1], sol.ts[1:], strict=True):
            y = integrate(_field(w), y, t, t_next, step_size=abs(t_next - t)).y1
        return y

    g_replay = torch.autograd.grad(replay(y0, w).square().sum(), (y0, w))
    for a, b in zip(g_adaptive, g_replay, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(replay, (y0, w))


# ---------------------------------------------------------------------------- errors
def test_max_steps_error_is_actionable() -> None:
    with pytest.raises(SolverError, match=r"solver\.max_steps=5.*rtol/atol"):
        integrate(kepler, kepler_exact(0.0), 0.0, 10.0, rtol=1e-10, atol=1e-10, max_steps=5)
    with pytest.raises(SolverError, match=r"solver\.max_steps"):
        integrate(kepler, kepler_exact(0.0), 0.0, 10.0, method="rk4", step_size=1e-3, max_steps=100)


def test_blow_up_raises_solver_error() -> None:
    # y' = y² from y(0)=1 explodes at t=1; the controller cannot pass it.
    with pytest.raises(SolverError, match=r"solver\."):
        integrate(lambda t, y: y * y, torch.ones(3, dtype=torch.float64), 0.0, 2.0, max_steps=2000)


@pytest.mark.parametrize("method", FIXED_METHODS)
def test_fixed_only_method_needs_step_size(method: str) -> None:
    with pytest.raises(ValueError, match="step_size"):
        integrate(kepler, kepler_exact(0.0), 0.0, 1.0, method=method)


def test_bad_arguments() -> None:
    y0 = kepler_exact(0.0)
    with pytest.raises(ValueError, match="unknown solver.method"):
        integrate(kepler, y0, 0.0, 1.0, method="rk45")
    with pytest.raises(ValueError, match="step_size"):
        integrate(kepler, y0, 0.0, 1.0, step_size=0.0)
    assert isinstance(integrate(kepler, y0, 0.0, 1.0, first_step=0.1), Solution)
