"""sensealg=interpolating: continuous adjoint for (λ, μ) with y(t) from dense output.

Forward: `integrate(..., record=True, record_stages=True)` without autograd; the accepted
states and stages are kept (through save_for_backward) as the forward solution's dense
output. Backward: only [λ, μ] is integrated from t1 to t0,

    dλ/dt = -λᵀ ∂f/∂y(t, y(t)),   dμ/dt = -λᵀ ∂f/∂p(t, y(t)),

with y(t) interpolated from the forward solution (SciMLSensitivity's InterpolatingAdjoint
with a dense forward solution), so y is never re-integrated backwards: no instability of
the backward y solve, at the cost of holding the forward solution. Any state shape.
With `sensealg.checkpointing=true` only y0 is held, and the backward pass recomputes the
forward dense output first (one more forward solve, counted in the backward NFE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nodecli.ode.autograd import flat_cat, grads_or_zeros, mixed_norm, split_flat, vjp
from nodecli.ode.dense import DenseOutput
from nodecli.ode.spec import SolveSpec, backward_solve, forward_solve


def save_forward(
    ctx: Any, f: Any, spec: SolveSpec, t0: float, t1: float, y0: Tensor, params: Sequence[Tensor]
) -> Tensor:
    """Forward solve; keep its dense output, or with `spec.sensealg.checkpointing` only y0."""
    ctx.f, ctx.spec, ctx.t0, ctx.t1 = f, spec, t0, t1
    if spec.sensealg.checkpointing:
        y1 = forward_solve(f, y0, t0, t1, spec.solver).y1
        ctx.dense, ctx.n_dense = None, 1
        ctx.save_for_backward(y0, *params)
        return y1
    sol = forward_solve(f, y0, t0, t1, spec.solver, record=True, record_stages=True)
    ctx.dense = DenseOutput.from_solution(spec.solver.method, sol, f)
    tensors = ctx.dense.take_tensors()  # saved below: the only references kept
    ctx.n_dense = len(tensors)
    ctx.save_for_backward(*tensors, *params)
    return sol.y1


def load_forward(ctx: Any) -> tuple[DenseOutput, tuple[Tensor, ...]]:
    """The forward dense output (recomputed from y0 with `checkpointing`) and the params."""
    saved = ctx.saved_tensors
    params = saved[ctx.n_dense :]
    if ctx.dense is None:
        with torch.no_grad():
            sol = forward_solve(  # y0 was checked by the forward pass
                ctx.f,
                saved[0],
                ctx.t0,
                ctx.t1,
                ctx.spec.solver,
                record=True,
                record_stages=True,
                check_y0=False,
            )
        return DenseOutput.from_solution(ctx.spec.solver.method, sol, ctx.f), params
    dense: DenseOutput = ctx.dense
    ctx.dense = None
    dense.restore_tensors(saved[: ctx.n_dense])
    return dense, params


class ForwardSolutionFunction(torch.autograd.Function):
    """The forward pass `interpolating` and `gauss` share: keep the forward solution
    (or y0); subclasses define the backward pass that reads it with `load_forward`."""

    @staticmethod
    def forward(ctx: Any, f: Any, spec: Any, t0: float, t1: float, y0: Tensor, *params: Tensor):
        return save_forward(ctx, f, spec, t0, t1, y0, params)


class _Interpolating(ForwardSolutionFunction):
    @staticmethod
    def backward(ctx: Any, grad_y1: Tensor):
        dense, params = load_forward(ctx)
        f, spec = ctx.f, ctx.spec
        shape = grad_y1.shape
        n = grad_y1.numel()
        n_p = sum(p.numel() for p in params)
        # a parameter of another dtype than the state: its adjoint is carried in the state's
        cast = grad_y1.dtype if any(p.dtype != grad_y1.dtype for p in params) else None

        def augmented(t: float, a: Tensor) -> Tensor:
            lam = a[:n].view(shape)
            with torch.enable_grad():
                y = dense(t).detach().requires_grad_()
                fy = f(t, y)
                grads = vjp(fy, lam, (y, *params))
            f.backpropagated += 1
            if any(g is None for g in grads):
                grads = grads_or_zeros(grads, (y, *params))
            return flat_cat(grads, cast).neg_()

        a1 = torch.cat([grad_y1.reshape(-1), grad_y1.new_zeros(n_p)])
        norm = mixed_norm((n, n_p), use=1 if spec.sensealg.seminorm else 2)
        with torch.no_grad():
            a0 = backward_solve(augmented, a1, ctx.t1, ctx.t0, spec, norm).y1
        return (None, None, None, None, a0[:n].view(shape), *split_flat(a0[n:], params))


def interpolating_solve(
    f: Any, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    return _Interpolating.apply(f, spec, t0, t1, y0, *params)
