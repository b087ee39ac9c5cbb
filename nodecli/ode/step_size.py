"""Step-size control: the initial step and the next step's factor (as torchdiffeq).

Times and step sizes stay Python floats; the few reads of the device these need happen
here, under `torch.no_grad()` (step sizes are constants for the gradient).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

from nodecli.ode.errors import SolverError, nonfinite_initial_state
from nodecli.ode.field import VectorField

Norm = Callable[[Tensor], Tensor]

# Step-size controller constants, as torchdiffeq's RKAdaptiveStepsizeODESolver.
SAFETY = 0.9
IFACTOR = 10.0
DFACTOR = 0.2
EPS = sys.float_info.epsilon


def rms_norm(x: Tensor) -> Tensor:
    """Root mean square over all elements (torchdiffeq's default norm)."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def select_initial_step(
    f: VectorField,
    t0: float,
    y0: Tensor,
    f0: Tensor,
    direction: float,
    order: int,
    rtol: float,
    atol: float,
    norm: Norm,
    autonomous: bool = False,
) -> float:
    """Initial |h| by Hairer, Nørsett & Wanner, Solving ODEs I, Sec. II.4 (as torchdiffeq).

    `order` is the method order; torchdiffeq passes order-1 and raises to 1/(order-1+1).
    Costs one vector-field evaluation, for the probe f(t0 ± h0, y0 ± h0 f0), and host
    reads of the norms d0, d1, d2. For an AUTONOMOUS f (t is ignored) h0 need not reach
    the host before the probe, so all three are read at once where `fused_add` is
    reproducible on the device; otherwise d0 and d1 are read together, then d2. The
    first read also tells whether y0 and f0 are finite (y0 / scale is NaN exactly where
    y0 is NaN or inf), so a diverged input fails here, before any step. Runs without grad
    (step sizes are constants).
    """
    with torch.no_grad():
        scale = y0.abs().mul_(rtol).add_(atol)
        n0, n1 = norm(y0 / scale), norm(f0 / scale)
        if autonomous and fused_add_is_reproducible(y0.device, y0.dtype):
            d0_t, d1_t = n0.double(), n1.double()
            h0_t = torch.where((d0_t < 1e-5) | (d1_t < 1e-5), 1e-6, 0.01 * d0_t / d1_t)
            f1 = f(t0, fused_add(y0, f0, direction * h0_t))  # any t: f ignores it
            d0, d1, n2 = torch.stack([n0, n1, norm((f1 - f0) / scale)]).tolist()
            h0 = _check_and_h0(d0, d1, t0)
        else:
            d0, d1 = torch.stack([n0, n1]).tolist()
            h0 = _check_and_h0(d0, d1, t0)
            f1 = f(t0 + direction * h0, torch.add(y0, f0, alpha=direction * h0))
            n2 = float(norm((f1 - f0) / scale))
        d2 = n2 / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100.0 * h0, h1)


def _check_and_h0(d0: float, d1: float, t0: float) -> float:
    """The probe step h0 from ‖y0‖ and ‖f0‖ (scaled), refusing non-finite ones."""
    if not math.isfinite(d0):
        raise nonfinite_initial_state()
    if not math.isfinite(d1):
        raise SolverError(
            f"f(t0, y0) is not finite at t0={t0:g} (|f| overflows or divides by zero "
            "at the initial state): no step size can start this solve"
        )
    return 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1


def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The type `torch.add` computes in (reduced floats in float32)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def fused_add(y: Tensor, k: Tensor, alpha: Tensor) -> Tensor:
    """`torch.add(y, k, alpha=float(alpha))` for a 0-d float64 ALPHA still on the device.

    The add kernel casts alpha to its compute type and evaluates y + alpha·k with one
    rounding (a fused multiply-add); here the product of two floats is exact in float64
    and the sum is rounded once more, which gives the same bits except in cases a
    float32 FMA never reaches (checked by `fused_add_is_reproducible`).
    """
    op = _opmath(y.dtype)
    a = alpha.to(op).double()
    return (y.double() + k.double() * a).to(op).to(y.dtype)


@cache
def fused_add_is_reproducible(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `fused_add` gives torch.add's exact bits on DEVICE for DTYPE (checked once
    per process on samples with a vector tail, where kernels may round differently).
    float64 has no wider type to emulate its FMA, and MPS has no float64: both no."""
    if _opmath(dtype) != torch.float32 or device.type == "mps":
        return False
    gen = torch.Generator().manual_seed(0)
    y = (torch.randn(4099, generator=gen, dtype=torch.float64) * 3).to(device, dtype)
    k = torch.randn(4099, generator=gen, dtype=torch.float64).to(device, dtype)
    for alpha in (0.01234567, -3.3e-6, 1e-6, 0.25, -7.77):
        a = torch.tensor(alpha, dtype=torch.float64, device=device)
        if not torch.equal(fused_add(y, k, a), torch.add(y, k, alpha=alpha)):
            return False
    return True
