"""Tsit5 for torchdiffeq, so `odeint`/`odeint_adjoint` can use the tutorial's solver.

torchdiffeq (0.2.x) ships dopri5/dopri8/bosh3 but no Tsit5. Its adaptive RK machinery is
tableau-driven, so Tsit5 is just a subclass of `RKAdaptiveStepsizeODESolver` with the
Tsit5 coefficients. torchdiffeq interpolates inside a step with a quartic fitted through
y0, y1, f0, f1 and y(t0 + h/2); `mid` gives that midpoint, and we take it from Tsit5's own
4th-order dense output b_i(1/2) (exactly what torchdiffeq's dopri5 does with Shampine's
continuous extension).
"""

from __future__ import annotations

import importlib

import torch
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver, _ButcherTableau

from nodecli.ode.tableaus import TSIT5, dense_weights

__all__ = ["Tsit5Solver", "register_tsit5"]


def _f64(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


_TSIT5_TABLEAU = _ButcherTableau(
    alpha=_f64(TSIT5.c[1:]),
    beta=[_f64(row) for row in TSIT5.a[1:]],
    c_sol=_f64(TSIT5.b),
    c_error=_f64(TSIT5.b_err or ()),
)


class Tsit5Solver(RKAdaptiveStepsizeODESolver):
    """Tsitouras 5(4) with FSAL and 4th-order interpolation, in torchdiffeq's framework."""

    order = 5
    tableau = _TSIT5_TABLEAU
    mid = _f64(dense_weights(TSIT5, 0.5))


def register_tsit5() -> type:
    """Add method="tsit5" to torchdiffeq's solver registry (idempotent); returns the class.

    `odeint` and `odeint_adjoint` both look methods up in the same module-level `SOLVERS`
    dict, so one entry serves both. A torchdiffeq that already has its own "tsit5" keeps it.
    """
    solvers: dict[str, type] = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
    return solvers.setdefault("tsit5", Tsit5Solver)
