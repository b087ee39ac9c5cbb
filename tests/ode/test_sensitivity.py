"""Gradient agreement, NFE accounting and memory ordering of every sensitivity method."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nodecli.experiment.memory import measure_step, saved_for_backward
from nodecli.experiment.model import build_model
from nodecli.ode.methods import SENSEALGS, Adjoint, method_for
from nodecli.ode.sensitivity import IMPLEMENTATIONS, CountingField, solve
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec

METHODS = [m for m in SENSEALGS if m != "direct"]
STEP = {"rk4": 0.05, "euler": 0.01, "midpoint": 0.02}


def mlp_field(width: int = 4, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, 8), nn.Tanh(), nn.Linear(8, width), nn.Tanh()).to(dtype)


class ConvField(nn.Module):
    """An image-shaped (N, C, H, W) vector field, explicitly time-dependent."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, t: float, y: Tensor) -> Tensor:
        return torch.tanh(self.conv(y)) * (1.0 + 0.2 * t)


def gradients(
    module: nn.Module, y0: Tensor, spec: SolveSpec, t1: float = 1.0
) -> tuple[Tensor, int, int]:
    """Gradient of a fixed linear functional of y(t1) w.r.t. (y0, params); NFE fwd/bwd."""
    params = list(module.parameters())
    counter = CountingField(
        lambda t, y: module(t, y) if isinstance(module, ConvField) else module(y)
    )
    y0 = y0.detach().requires_grad_()
    y1 = solve(counter, y0, params, 0.0, t1, spec)
    forward = counter.total
    weights = torch.linspace(-1.0, 1.0, y1.numel(), dtype=y1.dtype).view_as(y1)
    grads = torch.autograd.grad((y1 * weights).sum() + (y1**2).sum(), (y0, *params))
    return torch.cat([g.reshape(-1) for g in grads]), forward, counter.total - forward


def rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def spec_for(method: str, sensealg: str, tol: float = 1e-8, **options) -> SolveSpec:
    """SOLVER at TOL (fixed tableaus at their STEP) with SENSEALG's options (its defaults:
    gauss checkpoints, as in the config)."""
    solver = SolverSettings(method=method, rtol=tol, atol=tol, step_size=STEP.get(method))
    return SolveSpec(solver, method_for(sensealg, **options))


def with_options(spec: SolveSpec, **options) -> SolveSpec:
    return replace(spec, sensealg=replace(spec.sensealg, **options))


def torchdiffeq_adjoint(
    f: CountingField, y0: Tensor, params: list[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    """torchdiffeq's odeint_adjoint with Tsit5 registered, as a cross-check of `adjoint`."""
    from torchdiffeq import odeint_adjoint

    from nodecli.ode.torchdiffeq_tsit5 import register_tsit5

    register_tsit5()
    solver, method = spec.solver, spec.sensealg
    assert isinstance(method, Adjoint)
    options: dict[str, object] = {"max_num_steps": solver.max_steps}
    adjoint_options = dict(options, norm="seminorm") if method.seminorm else dict(options)
    backward = method.backward_settings(solver)
    t = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    ys = odeint_adjoint(
        f,
        y0,
        t,
        rtol=solver.rtol,
        atol=solver.atol,
        method=solver.method,
        options=options,
        adjoint_rtol=backward.rtol,
        adjoint_atol=backward.atol,
        adjoint_options=adjoint_options,
        adjoint_params=tuple(params),
    )
    return ys[-1]


@dataclass
class TorchdiffeqAdjoint(Adjoint):
    """A test-only gradient method: adjoint's options, torchdiffeq's implementation."""

    name: str = "torchdiffeq_adjoint"


@pytest.mark.parametrize("solver", ["tsit5", "dopri5", "bosh3", "dopri8", "rk4"])
def test_every_method_matches_direct_in_float64(solver: str) -> None:
    field = mlp_field()
    y0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref, _, _ = gradients(field, y0, spec_for(solver, "direct"))
    # dopri8 included: its quartic dense output keeps interpolating and gauss within 1e-6
    # at its long 8th-order steps (a cubic Hermite fallback gave ~2e-6 here).
    for sensealg in METHODS:
        g, nfe_f, nfe_b = gradients(field, y0, spec_for(solver, sensealg))
        assert rel(g, ref) < 1e-6, (solver, sensealg, rel(g, ref))
        assert nfe_f > 0 and nfe_b > 0


def test_checkpoint_equals_direct_exactly_up_to_rounding() -> None:
    field = mlp_field(dtype=torch.float32)
    y0 = torch.randn(16, 4, generator=torch.Generator().manual_seed(2))
    for solver in ("tsit5", "dopri5", "bosh3", "rk4", "midpoint"):
        ref, f_ref, _ = gradients(field, y0, spec_for(solver, "direct", tol=1e-3))
        g, f_chk, _ = gradients(field, y0, spec_for(solver, "checkpoint", tol=1e-3))
        assert f_chk == f_ref  # the same forward solve
        assert rel(g, ref) <= 1e-5, solver


@pytest.mark.parametrize("sensealg", ["direct", *METHODS])
def test_image_shaped_state(sensealg: str) -> None:
    torch.manual_seed(0)
    field = ConvField().double()
    y0 = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    ref, _, _ = gradients(field, y0, spec_for("tsit5", "direct", tol=1e-9))
    g, _, _ = gradients(field, y0, spec_for("tsit5", sensealg, tol=1e-9))
    assert g.shape == ref.shape
    assert rel(g, ref) < 1e-6


def test_adjoint_matches_torchdiffeq_odeint_adjoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(IMPLEMENTATIONS, TorchdiffeqAdjoint, torchdiffeq_adjoint)
    field = mlp_field()
    y0 = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for seminorm in (False, True):
        ours, _, _ = gradients(field, y0, spec_for("tsit5", "adjoint", 1e-9, seminorm=seminorm))
        theirs_spec = spec_for("tsit5", "direct", 1e-9)
        theirs_spec = replace(theirs_spec, sensealg=TorchdiffeqAdjoint(seminorm=seminorm))
        theirs, _, _ = gradients(field, y0, theirs_spec)
        assert rel(ours, theirs) < 1e-6


def test_adjoint_tolerances_and_seminorm_take_effect() -> None:
    field = mlp_field()
    y0 = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    base = spec_for("tsit5", "adjoint", 1e-6)
    _, _, loose = gradients(field, y0, base)
    _, _, tight = gradients(field, y0, with_options(base, adjoint_rtol=1e-10, adjoint_atol=1e-10))
    _, _, semi = gradients(field, y0, with_options(base, seminorm=True))
    assert tight > loose  # tighter backward tolerances: more backward evaluations
    assert semi <= loose  # a seminorm never needs more steps here
    for sensealg in ("interpolating", "gauss"):
        _, _, a = gradients(field, y0, spec_for("tsit5", sensealg, 1e-6))
        _, _, b = gradients(
            field, y0, spec_for("tsit5", sensealg, 1e-6, adjoint_rtol=1e-10, adjoint_atol=1e-10)
        )
        assert b > a


def test_interpolating_checkpointing_gives_same_gradient_with_less_held() -> None:
    field = mlp_field()
    y0 = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    kept, _, _ = gradients(field, y0, spec_for("tsit5", "interpolating", 1e-7))
    recomputed, _, _ = gradients(
        field, y0, with_options(spec_for("tsit5", "interpolating", 1e-7), checkpointing=True)
    )
    assert rel(recomputed, kept) < 1e-12


def test_no_grad_solve_keeps_nothing() -> None:
    field = mlp_field()
    counter = CountingField(lambda t, y: field(y))
    y0 = torch.randn(3, 4, dtype=torch.float64)
    for sensealg in SENSEALGS:
        with torch.no_grad():
            y1 = solve(counter, y0, list(field.parameters()), 0.0, 1.0, spec_for("tsit5", sensealg))
        assert not y1.requires_grad


def reference_model(sensealg: str, t1: float, style: str = "module"):
    spec = SolveSpec(sensealg=method_for(sensealg))
    torch.manual_seed(0)
    return build_model(style, spec, 20, 10, t1)


def batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)


def held_bytes(sensealg: str, t1: float) -> int:
    x, y = batch()
    model = reference_model(sensealg, t1)
    with saved_for_backward(exclude=[*model.parameters(), x]) as saved:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return saved.bytes


def test_memory_held_for_backward_ordering() -> None:
    held = {(m, t1): held_bytes(m, t1) for m in SENSEALGS for t1 in (1.0, 8.0)}
    for m in ("adjoint", "gauss"):  # constant in the number of steps
        assert held[m, 8.0] == held[m, 1.0]
    assert held["direct", 8.0] > 1.5 * held["direct", 1.0]  # grows with steps
    assert held["checkpoint", 8.0] <= 0.25 * held["direct", 8.0]
    assert held["adjoint", 8.0] < held["checkpoint", 8.0] < held["interpolating", 8.0]
    assert held["interpolating", 8.0] < held["direct", 8.0]


def test_measure_step_reports_peak_on_cpu() -> None:
    x, y = batch()
    model = reference_model("direct", 1.0)
    mem = measure_step(lambda: F.cross_entropy(model(x), y), torch.device("cpu"), [x])
    assert mem.hold_bytes > 0 and mem.peak_bytes >= mem.hold_bytes * 0.5


@pytest.mark.parametrize("sensealg", METHODS)
def test_layer_styles_give_the_same_gradient(sensealg: str) -> None:
    x, y = batch()
    grads = []
    for style in ("module", "functional"):
        model = reference_model(sensealg, 1.0, style)
        F.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_methods_on_cuda_match_cpu(sensealg: str) -> None:
    x, y = batch()
    grads = []
    for device in ("cpu", "cuda"):
        model = reference_model(sensealg, 1.0).to(device)
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        grads.append(torch.cat([p.grad.reshape(-1).cpu() for p in model.parameters()]))
    assert rel(grads[1], grads[0]) < 1e-4
    mem = measure_step(lambda: F.cross_entropy(model(x.cuda()), y.cuda()), torch.device("cuda"), [])
    assert mem.peak_bytes > 0


def test_checkpoint_matches_direct_on_reference_model_float32() -> None:
    x, y = batch()
    grads = []
    for sensealg in ("direct", "checkpoint"):
        model = reference_model(sensealg, 1.0)
        F.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert rel(grads[1], grads[0]) <= 1e-5


def test_vjps_matches_autograd_grad_bit_for_bit() -> None:
    """The engine entry point `vjps` (gauss's quadrature, checkpoint's recomputed steps)
    returns what torch.autograd.grad returns, None for an unused input included."""
    from nodecli.ode.autograd import vjps

    torch.manual_seed(0)
    w = torch.randn(5, 5, dtype=torch.float32, requires_grad=True)
    unused = torch.randn(3, requires_grad=True)
    x = torch.randn(7, 5)
    outputs = [torch.tanh(x @ w), (x @ w).sin()]
    cotangents = [torch.randn(7, 5), torch.randn(7, 5)]
    expected = torch.autograd.grad(
        outputs, (w, unused), cotangents, retain_graph=True, allow_unused=True
    )
    got = vjps(outputs, cotangents, (w, unused))
    assert got[1] is None and expected[1] is None
    assert torch.equal(got[0], expected[0])
