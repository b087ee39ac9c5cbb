"""sensealg=gauss: adjoint λ solved backwards, ∫ λᵀ ∂f/∂p dt by Gauss–Legendre quadrature.

Forward: as `interpolating`. With `sensealg.checkpointing=true` (gauss's default, as
SciMLSensitivity's GaussAdjoint(checkpointing=true) with checkpoints at t0 only) only
y0 is held for backward, and the backward pass first recomputes the forward solution
with its dense output (one more forward solve, counted in the backward NFE): memory
held after the forward pass is then constant in the number of steps. With
`checkpointing=false` the forward dense output is held instead. Backward: only
λ is integrated from t1 to t0, dλ/dt = -λᵀ ∂f/∂y(t, y(t)), with y(t) from the forward
dense output; its error control sees λ alone (there is no μ in the state, so the
parameter gradient never forces small steps). Then, on each accepted backward step
[s + h, s], the parameter gradient

    ∫ λ(t)ᵀ ∂f/∂p(t, y(t)) dt ≈ -h Σ_j w_j λ(t_j)ᵀ ∂f/∂p(t_j, y(t_j))   (h < 0 if t1 > t0)

is accumulated with an n-point Gauss–Legendre rule (n = ⌈(order+1)/2⌉: 3 points for
tsit5/dopri5/rk4, exact for polynomials of degree 2n-1), with λ(t_j) from the backward
step's own dense output and y(t_j) from the forward one; all nodes of a step share one
batched VJP w.r.t. the parameters (SciMLSensitivity's GaussAdjoint).

The quadrature runs over the recorded backward steps once the λ solve has finished, so
the backward solve's stages are held until then (they are freed step by step as the sum
proceeds); this costs memory during backward only, not held after the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nodecli.ode.autograd import grads_or_zeros, vjp, vjps
from nodecli.ode.dense import DenseOutput
from nodecli.ode.interpolating import ForwardSolutionFunction, load_forward
from nodecli.ode.spec import SolveSpec, backward_solve
from nodecli.ode.tableaus import TABLEAUS


@cache
def gauss_legendre(n: int) -> tuple[tuple[float, float], ...]:
    """(θ_j, w_j) of the n-point Gauss–Legendre rule on [0, 1] (weights sum to 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return tuple((float((xi + 1.0) / 2.0), float(wi / 2.0)) for xi, wi in zip(x, w, strict=True))


def n_gauss_points(method: str) -> int:
    return max(1, math.ceil((TABLEAUS[method].order + 1) / 2))


class _Gauss(ForwardSolutionFunction):
    @staticmethod
    def backward(ctx: Any, grad_y1: Tensor):
        ydense, params = load_forward(ctx)
        f, spec = ctx.f, ctx.spec

        def lam_field(t: float, lam: Tensor) -> Tensor:
            with torch.enable_grad():
                y = ydense(t).detach().requires_grad_()
                fy = f(t, y)
                (g,) = vjp(fy, lam, (y,))
            f.backpropagated += 1
            return torch.zeros_like(lam) if g is None else g.neg_()  # None: f ignores y

        with torch.no_grad():
            sol = backward_solve(
                lam_field, grad_y1, ctx.t1, ctx.t0, spec, None, record=True, record_stages=True
            )
        lam_dense = DenseOutput.from_solution(spec.solver.method, sol, lam_field)
        grad_y0 = sol.y1
        del sol  # lam_dense now holds the only references to the backward stages
        rule = gauss_legendre(n_gauss_points(spec.solver.method))
        grad_params = [torch.zeros_like(p) for p in params]
        for i in range(lam_dense.n if params else 0):  # no parameter: no quadrature
            s, h = lam_dense.ts[i], lam_dense.hs[i]
            outputs, cotangents = [], []
            with torch.enable_grad():
                for theta, w in rule:
                    t = s + theta * h
                    with torch.no_grad():
                        lam = lam_dense.at_step(i, theta)
                        y = ydense(t)
                    outputs.append(f(t, y))
                    # μ(t0) = ∫_{t0}^{t1} λᵀ ∂f/∂p dt and this backward step runs s → s + h,
                    # so its share is -h Σ w_j g(t_j): |h| only when t1 > t0.
                    cotangents.append(lam.mul(-h * w))
                grads = vjps(outputs, cotangents, params)
            f.backpropagated += len(rule)
            for acc, g in zip(grad_params, grads_or_zeros(grads, params), strict=True):
                acc.add_(g)
            if i > 0:  # step i-1's stages are no longer needed (step i's f1 may need i+1)
                lam_dense.ks[i - 1] = []
        return (None, None, None, None, grad_y0, *grad_params)


def gauss_solve(
    f: Any, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    return _Gauss.apply(f, spec, t0, t1, y0, *params)
