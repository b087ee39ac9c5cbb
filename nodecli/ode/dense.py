"""Dense output of a recorded solve, and helpers shared by the adjoint methods.

`DenseOutput` evaluates y(t) anywhere on a solve recorded with
`integrate(..., record=True, record_stages=True)`, from each step's stages
(`interpolate`): the methods `interpolating` and `gauss` read the forward state
from it instead of re-integrating y backwards.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from torch import Tensor

from nodecli.ode.field import VectorField
from nodecli.ode.solver import Solution
from nodecli.ode.tableaus import TABLEAUS, ButcherTableau, dense_weights


class DenseOutput:
    """y(t) on [ts[0], ts[-1]] from recorded steps (ts increasing or decreasing).

    Methods without their own interpolant and without FSAL need f(t_{i+1}, y_{i+1}) for
    the Hermite fallback: it is the next step's first stage, and for the last step it is
    evaluated once on demand with F (counted by F's own counter, if any).
    """

    def __init__(
        self,
        method: str,
        ts: Sequence[float],
        ys: Sequence[Tensor],
        ks: Sequence[Sequence[Tensor]],
        hs: Sequence[float],
        f: VectorField | None = None,
    ) -> None:
        self.tableau = TABLEAUS[method]
        self.ts = list(ts)
        self.ys = list(ys)
        self.ks = list(ks)
        self.hs = list(hs)
        self.f = f
        self.n = len(self.hs)
        self.increasing = self.n == 0 or self.hs[0] > 0.0
        # bisect needs ascending keys: store ±t.
        self._keys = self.ts if self.increasing else [-t for t in self.ts]
        self._needs_f1 = self.tableau.dense is None and not self.tableau.fsal
        self._last_f1: Tensor | None = None

    @classmethod
    def from_solution(cls, method: str, sol: Solution, f: VectorField | None = None):
        return cls(method, sol.ts, sol.ys, sol.ks, sol.hs, f)

    def step_index(self, t: float) -> int:
        key = t if self.increasing else -t
        i = bisect.bisect_right(self._keys, key) - 1
        return min(max(i, 0), self.n - 1)

    def f1(self, i: int) -> Tensor | None:
        """f(t_{i+1}, y_{i+1}) where the interpolant of step i needs it, else None."""
        if not self._needs_f1:
            return None
        if i + 1 < self.n:
            return self.ks[i + 1][0]
        if self._last_f1 is None:
            if self.f is None:
                raise ValueError("the Hermite fallback needs f for the last step")
            with torch.no_grad():
                self._last_f1 = self.f(self.ts[-1], self.ys[-1])
        return self._last_f1

    def at_step(self, i: int, theta: float) -> Tensor:
        """y at ts[i] + θ hs[i]."""
        if theta == 0.0:
            return self.ys[i]
        if theta == 1.0:
            return self.ys[i + 1]
        return interpolate(self.tableau, theta, self.ys[i], self.ks[i], self.hs[i], self.f1(i))

    def __call__(self, t: float) -> Tensor:
        if self.n == 0:
            return self.ys[0]
        i = self.step_index(t)
        return self.at_step(i, (t - self.ts[i]) / self.hs[i])

    def take_tensors(self) -> list[Tensor]:
        """Hand over every tensor held (states, stages) for save_for_backward, and drop
        them here; `restore_tensors` puts back what ctx.saved_tensors returns."""
        self._layout = (len(self.ys), [len(ks) for ks in self.ks])
        tensors = [*self.ys, *(k for ks in self.ks for k in ks)]
        self.ys, self.ks = [], []
        return tensors

    def restore_tensors(self, tensors: Sequence[Tensor]) -> None:
        n_ys, k_lens = self._layout
        it = iter(tensors)
        self.ys = [next(it) for _ in range(n_ys)]
        self.ks = [[next(it) for _ in range(m)] for m in k_lens]


def interpolate(
    tableau: ButcherTableau,
    theta: float,
    y0: Tensor,
    ks: Sequence[Tensor],
    h: float,
    f1: Tensor | None = None,
) -> Tensor:
    """State at t0 + θh inside one step (0 <= θ <= 1) from the step's stages `ks`.

    Accuracy (local error of the interpolant, on top of the error already in y0/y1):

    * tsit5: own free interpolant, 4th order (error O(h^5));
    * dopri5: Hairer/Shampine continuous extension, 4th order (O(h^5));
    * dopri8: torchdiffeq's quartic through y0, f0, y(½), y1, f1, 4th order (O(h^5)),
      far below the method's 8th order;
    * bosh3: cubic Hermite (its own interpolant), 3rd order (O(h^4));
    * others (rk4, euler, midpoint): cubic Hermite fallback through y0, f0 = ks[0],
      y1 = y0 + hΣ b_i k_i and f1, 3rd order (O(h^4)) at best, and no better than the
      method itself. f1 = f(t0+h, y1) is ks[-1] for FSAL methods; for the others pass it
      (it is the first stage of the next step).
    """
    if tableau.dense is not None:
        weights = dense_weights(tableau, theta)
        return _lincomb(y0, ks, weights, h)
    if f1 is None:
        if not tableau.fsal:
            raise ValueError(
                f"{tableau.name} has no dense output and is not FSAL: pass f1=f(t0+h, y1) "
                "(the first stage of the next step) for the Hermite fallback"
            )
        f1 = ks[-1]
    # Hermite basis written as weights on y0, y1, h·f0, h·f1.
    t2, t3 = theta * theta, theta**3
    w_y1 = 3.0 * t2 - 2.0 * t3
    w_f0 = theta - 2.0 * t2 + t3
    w_f1 = t3 - t2
    y1 = _lincomb(y0, ks, tableau.b, h)
    out = torch.lerp(y0, y1, w_y1)  # (1-w) y0 + w y1
    out = out.add(ks[0], alpha=h * w_f0)
    return out.add(f1, alpha=h * w_f1)


def _lincomb(y0: Tensor, ks: Sequence[Tensor], weights: Sequence[float], h: float) -> Tensor:
    """y0 + h Σ w_i k_i, skipping zero weights.

    The first add allocates; the rest accumulate in place into it (the same kernel and
    order, so the same bits, minus one allocation per term).
    """
    out: Tensor | None = None
    for w, k in zip(weights, ks, strict=False):
        if w != 0.0:
            if out is None:
                out = torch.add(y0, k, alpha=h * w)
            else:
                out.add_(k, alpha=h * w)
    return y0 if out is None else out
