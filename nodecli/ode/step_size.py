"""Step-size control: the initial step and the next step's factor (as torchdiffeq).

Times and step sizes stay Python floats; the few reads of the device these need happen
here, under `torch.no_grad()` (step sizes are constants for the gradient).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from torch import Tensor

from nodecli.ode.errors import SolverError, nonfinite_initial_state

VectorField = Callable[[float, Tensor], Tensor]
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
) -> float:
    """Initial |h| by Hairer, Nørsett & Wanner, Solving ODEs I, Sec. II.4 (as torchdiffeq).

    `order` is the method order; torchdiffeq passes order-1 and raises to 1/(order-1+1).
    Costs one vector-field evaluation and two host reads: d0 and d1 in one, then d2 (the
    probe f(t0 ± h0, y0 ± h0 f0) needs h0 on the host). The first read also tells whether
    y0 and f0 are finite (y0 / scale is NaN exactly where y0 is NaN or inf), so a
    diverged input fails here, before any step, at no extra cost. Runs without grad
    (step sizes are constants).
    """
    with torch.no_grad():
        scale = y0.abs().mul_(rtol).add_(atol)
        d0, d1 = torch.stack([norm(y0 / scale), norm(f0 / scale)]).tolist()
        if not math.isfinite(d0):
            raise nonfinite_initial_state()
        if not math.isfinite(d1):
            raise SolverError(
                f"f(t0, y0) is not finite at t0={t0:g} (|f| overflows or divides by zero "
                "at the initial state): no step size can start this solve"
            )
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        y1 = torch.add(y0, f0, alpha=direction * h0)
        f1 = f(t0 + direction * h0, y1)
        d2 = float(norm((f1 - f0) / scale)) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)
    return min(100.0 * h0, h1)
