"""One Runge–Kutta step's stage loop: the tableau folded into scalar coefficients.

`plan` preprocesses a tableau once into the nonzero (stage, coefficient) pairs a step
needs, so a step is chained `add(..., alpha=h·a_ij)` calls on Python floats: no tableau
tensors are cast per step and zero coefficients are skipped. `integrate` (solver.py) and
the step recomputation of sensealg=checkpoint (`rk_step`) share these functions, so both
compute bitwise the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from nodecli.ode.field import VectorField
from nodecli.ode.tableaus import TABLEAUS, ButcherTableau

__all__ = ["Plan", "lincomb", "lincomb_zero", "n_step_evals", "plan", "rk_step", "stages"]


Terms = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Plan:
    """A tableau preprocessed once into the (stage index, coefficient) pairs a step needs."""

    tableau: ButcherTableau
    stages: tuple[tuple[float, Terms], ...]  # (c_i, nonzero a_ij) for stages i >= 1
    b: Terms
    b_err: Terms
    inv_order: float


@cache
def plan(method: str) -> Plan:
    tab = TABLEAUS[method]

    def nonzero(row: tuple[float, ...]) -> Terms:
        return tuple((j, x) for j, x in enumerate(row) if x != 0.0)

    return Plan(
        tableau=tab,
        stages=tuple((tab.c[i], nonzero(tab.a[i])) for i in range(1, tab.n_stages)),
        b=nonzero(tab.b),
        b_err=nonzero(tab.b_err) if tab.b_err is not None else (),
        inv_order=1.0 / tab.order,
    )


def lincomb(y: Tensor, ks: list[Tensor], terms: Terms, h: float) -> Tensor:
    """y + h Σ a_j k_j over the given nonzero terms.

    Chained `add` with a scalar alpha measured faster than stacking the stages into one
    matmul (torch.stack + addmm) or a custom autograd.Function for the reference (128, 20)
    float32 state on one CPU thread, forward + backward (≈2.5 vs 2.6 ms per solve). The
    first add allocates a fresh tensor; accumulating in place into it is autograd-safe
    because `add` saves no inputs for its backward.
    """
    if not terms:
        return y
    j, a = terms[0]
    out = torch.add(y, ks[j], alpha=h * a)
    for j, a in terms[1:]:
        out.add_(ks[j], alpha=h * a)
    return out


def stages(
    f: VectorField,
    y: Tensor,
    f0: Tensor,
    t: float,
    t_next: float,
    h: float,
    stages: tuple[tuple[float, Terms], ...],
) -> tuple[list[Tensor], Tensor]:
    """The stage derivatives k_1 = f0, k_i = f(t + c_i h, y + h Σ_j a_ij k_j) of one step,
    and the last stage's input (an FSAL method's y1). A stage with c = 1 is evaluated at
    T_NEXT, so that it matches the recorded grid exactly."""
    ks = [f0]
    yi = y
    for c, terms in stages:
        yi = lincomb(y, ks, terms, h)
        ks.append(f(t_next if c == 1.0 else t + c * h, yi))
    return ks, yi


def rk_step(
    f: VectorField, y: Tensor, t: float, h: float, method: str, t_next: float | None = None
) -> Tensor:
    """One step of METHOD from (t, y) with step h: y1, computed exactly as `integrate` does.

    Used to recompute accepted steps during a backward pass (sensealg=checkpoint). For an
    FSAL tableau the last stage only seeds the next step, so it is skipped: y1 comes from
    the same coefficients (a[-1] == b[:-1]) and the same operations as in `integrate`,
    hence bitwise the same value and the same derivative. Pass T_NEXT = the recorded end
    of the step (`Solution.ts[i + 1]`) so that stage times match too.
    """
    p = plan(method)
    step_stages = p.stages[:-1] if p.tableau.fsal else p.stages
    if t_next is None:
        t_next = t + h
    ks, _ = stages(f, y, f(t, y), t, t_next, h, step_stages)
    return lincomb(y, ks, p.b, h)


def n_step_evals(method: str) -> int:
    """Vector-field evaluations `rk_step` makes per step."""
    tab = TABLEAUS[method]
    return tab.n_stages - 1 if tab.fsal else tab.n_stages


def lincomb_zero(ks: list[Tensor], terms: Terms, h: float) -> Tensor:
    """h Σ e_j k_j (no base term), for the error estimate; callers hold no_grad."""
    j, e = terms[0]
    out = torch.mul(ks[j], h * e)
    for j, e in terms[1:]:
        out.add_(ks[j], alpha=h * e)
    return out
