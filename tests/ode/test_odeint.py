"""`nodecli.odeint`: torchdiffeq's calling convention, its test problems, and any field.

Problem families as torchdiffeq's tests use them (constant, sine, linear, plus exp), on
t = linspace(1, 8, 10) forward and reversed, checked against their analytic solutions at
torchdiffeq's tolerances for every solver × gradient method × dtype; gradients (y0,
parameters, t) against `torchdiffeq.odeint`.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torchdiffeq
from torch import Tensor, nn

from nodecli import odeint, odeint_adjoint
from nodecli.ode.methods import METHODS, Gauss, Interpolating

SENSEALGS = tuple(METHODS)
ADAPTIVE = ("tsit5", "dopri5", "bosh3", "dopri8")
FIXED = ("rk4", "euler", "midpoint")


class Constant(nn.Module):
    """dy/dt = a + (y - (a t + b))^5, y = a t + b (every Runge–Kutta method is exact)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.2))
        self.b = nn.Parameter(torch.tensor(3.0))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.a + (y - (self.a * t + self.b)) ** 5

    def exact(self, t: Tensor) -> Tensor:
        return self.a * t + self.b


class Sine(nn.Module):
    """dy/dt = 2y/t + t^4 sin 2t - t^2 + 4t^3: a field of t through torch.sin(t)."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return 2 * y / t + t**4 * torch.sin(2 * t) - t**2 + 4 * t**3

    def exact(self, t: Tensor) -> Tensor:
        c, s = torch.cos(2 * t), torch.sin(2 * t)
        return (-0.5 * t**4 * c + 0.5 * t**3 * s + 0.25 * t**2 * c - t**3 + 2 * t**4) + (
            math.pi - 0.25
        ) * t**2


class Linear(nn.Module):
    """dy/dt = A y with A = U - Uᵀ (skew: a rotation), y(t) = exp(A t) 1."""

    def __init__(self, dim: int = 10) -> None:
        super().__init__()
        u = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)) * 0.1
        self.A = nn.Parameter(u - u.T)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.A @ y

    def exact(self, t: Tensor) -> Tensor:
        a = self.A.detach().double()
        ones = torch.ones(a.shape[0], dtype=torch.float64)
        return torch.stack([torch.linalg.matrix_exp(a * float(ti)) @ ones for ti in t]).to(t)


class Exp(nn.Module):
    """dy/dt = w y, y(t) = e^(w t)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.4))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.w * y

    def exact(self, t: Tensor) -> Tensor:
        return torch.exp(self.w.detach() * t)


PROBLEMS = {"constant": Constant, "sine": Sine, "linear": Linear, "exp": Exp}


def problem(name: str, dtype: torch.dtype, reverse: bool):
    f = PROBLEMS[name]().to(dtype)
    t = torch.linspace(1, 8, 10, dtype=dtype)
    if reverse:
        t = t.flip(0)
    with torch.no_grad():
        sol = f.exact(t)
    return f, sol[0].clone().requires_grad_(), t, sol


def rel_error(true: Tensor, estimate: Tensor) -> float:
    return float(((true - estimate) / true).abs().max().detach())


def tolerances(method: str, dtype: torch.dtype) -> dict[str, float]:
    """torchdiffeq's: rtol 1e-7, atol 1e-9, tighter for dopri8."""
    if method == "dopri8":
        tight = dtype == torch.float64
        return {"rtol": 1e-12, "atol": 1e-14} if tight else {"rtol": 1e-7, "atol": 1e-7}
    return {"rtol": 1e-7, "atol": 1e-9}


def limit(method: str, name: str) -> float:
    """torchdiffeq's bounds on the relative error against the analytic solution."""
    if method == "bosh3":
        return 4e-3
    return 2e-3 if name == "linear" else 3e-4


def grads(f: nn.Module, y0: Tensor, ys: Tensor) -> Tensor:
    """Gradients of a fixed weighted sum of all outputs w.r.t. y0 and f's parameters,
    concatenated (the constant problem's ∂/∂b is ~1e-23: only the whole is comparable)."""
    weights = torch.linspace(0.5, 1.5, ys.numel(), dtype=ys.dtype).view_as(ys)
    inputs = [y0, *f.parameters()]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad((ys * weights).sum(), inputs)])


def rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


CASES = [(m, p) for m in ADAPTIVE for p in PROBLEMS] + [(m, "constant") for m in FIXED]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("method", "name"), CASES)
def test_torchdiffeq_problems_are_solved_within_its_tolerances(
    method: str, name: str, dtype: torch.dtype, reverse: bool
) -> None:
    """As torchdiffeq's own test: fixed-step methods (one step per output interval) on
    the constant problem, adaptive ones on all. Every gradient method runs this same
    forward solve (the next test checks that bit for bit)."""
    f, y0, t, sol = problem(name, dtype, reverse)
    ys = odeint(f, y0, t, method=method, **tolerances(method, dtype))
    assert ys.shape == (len(t), *y0.shape) and ys.dtype == dtype
    assert rel_error(sol, ys) < limit(method, name)


def gradient_limit(method: str, sensealg: str, dtype: torch.dtype) -> float:
    """How far our gradient may be from torchdiffeq's: both solve to the tolerance (bosh3,
    3rd order, least accurately); with fixed steps direct and checkpoint differentiate
    the same discrete solve as torchdiffeq.odeint, the continuous adjoints differ from it
    by the method's discretisation error (order 1, 2, 4 at h = 0.05)."""
    rounding = 1e-5 if dtype == torch.float32 else 1e-9
    if method in FIXED:
        if sensealg in ("direct", "checkpoint"):
            return rounding
        return {"euler": 5e-2, "midpoint": 2e-3, "rk4": 1e-5}[method] + rounding
    return 1e-3 if method == "bosh3" else 1e-4  # rtol 1e-6, accumulated over the steps


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("method", [*ADAPTIVE, *FIXED])
def test_every_gradient_method_gives_the_same_values_and_torchdiffeqs_gradients(
    method: str, dtype: torch.dtype, reverse: bool
) -> None:
    if method in FIXED:  # step grids aligned with the output times, as torchdiffeq's
        f, kwargs = Exp().to(dtype), {"options": {"step_size": 0.05}}
        t = torch.linspace(1, 2, 3, dtype=dtype)
    else:
        f, kwargs = Linear().to(dtype), {"rtol": 1e-6, "atol": 1e-8}
        t = torch.linspace(1, 4, 4, dtype=dtype)
    t = t.flip(0) if reverse else t
    y0 = f.exact(t[:1])[0].detach().requires_grad_()
    peer = "dopri5" if method == "tsit5" else method  # torchdiffeq has no tsit5
    ref = grads(f, y0, torchdiffeq.odeint(f, y0, t, method=peer, **kwargs))
    values = None
    for sensealg in SENSEALGS:
        ys = odeint(f, y0, t, method=method, sensealg=sensealg, **kwargs)
        values = ys.detach() if values is None else values
        assert torch.equal(ys, values), sensealg  # one forward solve for every method
        err = rel(grads(f, y0, ys), ref)
        assert err < gradient_limit(method, sensealg, dtype), (sensealg, err)


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_time_gradients_match_torchdiffeq_for_every_method(sensealg: str) -> None:
    f = Sine().double()
    t = torch.linspace(1, 3, 4, dtype=torch.float64, requires_grad=True)
    y0 = f.exact(t[:1].detach())[0].requires_grad_()
    weights = torch.tensor([0.3, -1.0, 2.0, 0.7], dtype=torch.float64)
    ys = odeint(f, y0, t, sensealg=sensealg, adjoint_params=())
    got = torch.autograd.grad((ys * weights).sum(), (y0, t))
    ref_ys = torchdiffeq.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    ref = torch.autograd.grad((ref_ys * weights).sum(), (y0, t))
    for g, r in zip(got, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-6), (g, r)


def test_time_gradients_in_reversed_time_match_torchdiffeq() -> None:
    f = Linear(4).double()
    t = torch.tensor([2.0, 1.5, 0.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for sensealg in SENSEALGS:
        g = torch.autograd.grad(odeint(f, y0, t, sensealg=sensealg)[1:].sum(), t)[0]
        r = torch.autograd.grad(torchdiffeq.odeint(f, y0, t, rtol=1e-10, atol=1e-12)[1:].sum(), t)
        assert torch.allclose(g, r[0], rtol=1e-5, atol=1e-7), (sensealg, g, r[0])


def check_against_torchdiffeq(f, y0: Tensor, t: Tensor, params: list[Tensor], **kwargs) -> None:
    """Values and gradients (y0, PARAMS) of every method agree with torchdiffeq.odeint."""
    ref_ys = torchdiffeq.odeint(f, y0, t, **kwargs)
    inputs = [y0, *params]
    ref = torch.autograd.grad(ref_ys.square().sum(), inputs, allow_unused=True)
    for sensealg in SENSEALGS:
        ys = odeint(f, y0, t, sensealg=sensealg, adjoint_params=params, **kwargs)
        assert ys.dtype == y0.dtype
        assert torch.allclose(ys, ref_ys, rtol=1e-5, atol=1e-6), sensealg
        got = torch.autograd.grad(ys.square().sum(), inputs, allow_unused=True)
        for g, r in zip(got, ref, strict=True):
            g = torch.zeros_like(r) if g is None and r is not None else g  # zero, as they say
            r = torch.zeros_like(g) if r is None and g is not None else r
            assert g is None or torch.allclose(g, r, rtol=1e-4, atol=1e-6), (sensealg, g, r)


T = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)


def test_a_field_with_no_trainable_parameter_is_differentiated_by_every_method() -> None:
    lin = nn.Linear(3, 3).double().requires_grad_(False)
    y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    check_against_torchdiffeq(lambda t, y: torch.tanh(lin(y)), y0, T, [])


def test_a_field_of_t_alone_gives_the_identity_gradient_in_y0() -> None:
    y0 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    check_against_torchdiffeq(lambda t, y: torch.exp(t).expand_as(y), y0, T, [])


def test_a_field_of_a_parameter_alone_gives_zero_gradient_through_y() -> None:
    w = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(2, dtype=torch.float64, requires_grad=True)
    check_against_torchdiffeq(lambda t, y: w * torch.ones_like(y), y0, T, [w])


def test_a_field_of_nothing_differentiable_still_solves_with_every_method() -> None:
    """A constant field, nothing requiring grad but y0: gradient 1 through the identity."""
    y0 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    check_against_torchdiffeq(lambda t, y: torch.ones_like(y), y0, T, [])


@pytest.mark.parametrize("method", ["tsit5", "dopri8", "rk4", "euler", "midpoint"])
def test_a_float64_field_on_a_float32_state_keeps_the_state_float32(method: str) -> None:
    lin = nn.Linear(3, 3).double()

    def field(t: Tensor, y: Tensor) -> Tensor:
        return torch.tanh(lin(y.double()))

    y0 = torch.randn(5, 3)
    options = {"step_size": 0.1} if method in FIXED else None
    for sensealg in SENSEALGS:  # the same solve with a float64 state is the reference
        ref = odeint(field, y0.double(), T, method=method, options=options, sensealg=sensealg,
                     adjoint_params=list(lin.parameters()))  # fmt: skip
        ref_g = torch.autograd.grad(ref.sum(), [*lin.parameters()])
        ys = odeint(
            field, y0, T, method=method, options=options, sensealg=sensealg,
            adjoint_params=list(lin.parameters()),
        )  # fmt: skip
        assert ys.dtype == torch.float32
        assert torch.allclose(ys.double(), ref, rtol=1e-4, atol=1e-5), sensealg
        got = torch.autograd.grad(ys.sum(), [*lin.parameters()])
        for g, r in zip(got, ref_g, strict=True):
            assert g.dtype == torch.float64
            assert torch.allclose(g, r, rtol=1e-3, atol=1e-4), (sensealg, method)


class Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 4)
        self.outer = nn.Linear(4, 3)
        self.inner.requires_grad_(False)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.tanh(self.outer(torch.tanh(self.inner(y)) * torch.cos(t)))


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_frozen_layers_get_no_gradient_and_the_others_torchdiffeqs(sensealg: str) -> None:
    torch.manual_seed(0)
    f = Frozen().double()
    y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1.0, 0.5, -0.25], dtype=torch.float64)  # reversed time
    odeint(f, y0, t, sensealg=sensealg)[-1].square().sum().backward()
    assert f.inner.weight.grad is None and f.inner.bias.grad is None
    got = [y0.grad, f.outer.weight.grad, f.outer.bias.grad]
    y0.grad = None
    f.zero_grad(set_to_none=True)
    torchdiffeq.odeint(f, y0, t, rtol=1e-7, atol=1e-9)[-1].square().sum().backward()
    for g, r in zip(got, [y0.grad, f.outer.weight.grad, f.outer.bias.grad], strict=True):
        assert torch.allclose(g, r, rtol=1e-5, atol=1e-7), sensealg


def test_the_field_gets_t_as_a_0d_tensor_of_the_states_dtype_and_device() -> None:
    seen = []

    def f(t: Tensor, y: Tensor) -> Tensor:
        seen.append((type(t), t.shape, t.dtype, t.device))
        return -y

    odeint(f, torch.ones(2, dtype=torch.float32), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert set(seen) == {(Tensor, torch.Size([]), torch.float32, torch.device("cpu"))}


def test_odeint_adjoint_is_odeint_with_the_adjoint_method() -> None:
    f = Linear(3).double()
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    a = odeint_adjoint(f, y0, T, adjoint_rtol=1e-9, adjoint_options={"norm": "seminorm"})
    b = odeint(f, y0, T, sensealg="adjoint")
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.sum(), [y0, f.A])
    gb = torch.autograd.grad(b.sum(), [y0, f.A])
    assert all(torch.allclose(x, y, rtol=1e-6) for x, y in zip(ga, gb, strict=True))


def test_options_objects_and_fixed_steps_are_accepted() -> None:
    f = Exp().double()
    y0 = torch.ones((), dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for sensealg in (Interpolating(checkpointing=True), Gauss(checkpointing=False)):
        ys = odeint(f, y0, t, method="rk4", options={"step_size": 0.01}, sensealg=sensealg)
        assert abs(float(ys[-1].detach()) - math.exp(0.4)) < 1e-8
    one = odeint(f, y0, torch.tensor([0.0], dtype=torch.float64))
    assert one.shape == (1,) and float(one[0]) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t": torch.tensor([0.0, 1.0, 0.5])}, "strictly increasing or strictly decreasing"),
        ({"t": torch.zeros(2, 2)}, "1-D tensor"),
        ({"method": "adams"}, "unknown method 'adams'; valid: tsit5"),
        ({"options": {"norm": None}}, "unknown options norm; valid: step_size, max_num_steps"),
        ({"sensealg": "backsolve"}, "unknown sensealg 'backsolve'; valid: direct, adjoint"),
        ({"sensealg": "gauss", "func": lambda t, y: -y}, "pass adjoint_params"),
        ({"y0": (torch.ones(1),)}, "y0 must be a tensor"),
    ],
)
def test_bad_arguments_are_one_line_errors_naming_what_is_valid(kwargs, message) -> None:
    args = {"func": Exp(), "y0": torch.ones(1), "t": torch.tensor([0.0, 1.0]), **kwargs}
    with pytest.raises((ValueError, TypeError), match=message) as err:
        odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_importing_odeint_from_nodecli_does_not_import_hydra() -> None:
    code = "import sys; from nodecli import odeint; assert 'hydra' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
