"""sensealg=interpolating: continuous adjoint for (λ, μ) with y(t) from dense output.

Forward: `integrate(..., record=True, record_stages=True)` without autograd; the accepted
states and stages are kept (through save_for_backward) as the forward solution's dense
output. Backward: only [λ, μ] is integrated from t1 to t0,

    dλ/dt = -λᵀ ∂f/∂y(t, y(t)),   dμ/dt = -λᵀ ∂f/∂p(t, y(t)),

with y(t) interpolated from the forward solution (SciMLSensitivity's InterpolatingAdjoint
with a dense forward solution), so y is never re-integrated backwards: no instability of
the backward y solve, at the cost of holding the forward solution. Any state shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nodecli.ode.adjoint import backward_solve, forward_solve
from nodecli.ode.dense import DenseOutput, mixed_norm, split_flat


class _Interpolating(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, f: Any, spec: Any, t0: float, t1: float, y0: Tensor, *params: Tensor):
        sol = forward_solve(f, y0, t0, t1, spec, record=True, record_stages=True)
        dense = DenseOutput.from_solution(spec.method, sol, f)
        ctx.f, ctx.spec, ctx.t0, ctx.t1, ctx.dense = f, spec, t0, t1, dense
        tensors = dense.take_tensors()
        ctx.n_dense = len(tensors)
        ctx.save_for_backward(*tensors, *params)
        return sol.y1

    @staticmethod
    def backward(ctx: Any, grad_y1: Tensor):
        saved = ctx.saved_tensors
        dense: DenseOutput = ctx.dense
        ctx.dense = None
        dense.restore_tensors(saved[: ctx.n_dense])
        params = saved[ctx.n_dense :]
        f, spec = ctx.f, ctx.spec
        shape = grad_y1.shape
        n = grad_y1.numel()
        n_p = sum(p.numel() for p in params)

        def augmented(t: float, a: Tensor) -> Tensor:
            lam = a[:n].view(shape)
            with torch.enable_grad():
                y = dense(t).detach().requires_grad_()
                fy = f(t, y)
                grads = torch.autograd.grad(fy, (y, *params), lam, allow_unused=True)
            f.backpropagated += 1
            parts = [
                (torch.zeros_like(x) if g is None else g).reshape(-1)
                for g, x in zip(grads, (y, *params), strict=True)
            ]
            return torch.cat(parts).neg_()

        a1 = torch.cat([grad_y1.reshape(-1), grad_y1.new_zeros(n_p)])
        norm = mixed_norm((n, n_p), use=1 if spec.seminorm else 2)
        with torch.no_grad():
            a0 = backward_solve(augmented, a1, ctx.t1, ctx.t0, spec, norm).y1
        return (None, None, None, None, a0[:n].view(shape), *split_flat(a0[n:], params))


def interpolating_solve(
    f: Any, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: Any
) -> Tensor:
    return _Interpolating.apply(f, spec, t0, t1, y0, *params)
