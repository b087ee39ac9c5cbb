"""sensealg=checkpoint: the gradient of `direct`, keeping only the accepted step states.

The forward solve runs without autograd and records the accepted states y_i, times t_i
and step sizes h_i. The backward pass walks the steps in reverse: it recomputes step i
from y_i with autograd on (`stages.rk_step`, the same operations as the forward solve)
and backpropagates the incoming cotangent through it. Step sizes are constants, as in
`direct` (and diffrax's RecursiveCheckpointAdjoint with its default checkpoints = every
step), so both give the same gradient up to floating-point summation order.

Memory held for backward: the accepted states (steps × state), instead of every stage
and activation of every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nodecli.ode.autograd import grads_or_zeros, vjp
from nodecli.ode.spec import SolveSpec, forward_solve
from nodecli.ode.stages import n_step_evals, rk_step


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, f: Any, spec: Any, t0: float, t1: float, y0: Tensor, *params: Tensor):
        sol = forward_solve(f, y0, t0, t1, spec.solver, record=True)
        ctx.f, ctx.method, ctx.ts, ctx.hs = f, spec.solver.method, sol.ts, sol.hs
        ctx.n_params = len(params)
        # States go through save_for_backward so that saved-tensor hooks see them.
        ctx.save_for_backward(*sol.ys[:-1], *params)
        return sol.y1

    @staticmethod
    def backward(ctx: Any, grad_y1: Tensor):
        saved = ctx.saved_tensors
        n_params = ctx.n_params
        params = saved[len(saved) - n_params :]
        ys = saved[: len(saved) - n_params]
        f, ts, hs = ctx.f, ctx.ts, ctx.hs
        evals = n_step_evals(ctx.method)
        g = grad_y1
        grad_params: list[Tensor] | None = None
        for i in range(len(hs) - 1, -1, -1):
            with torch.enable_grad():
                y = ys[i].detach().requires_grad_()
                y1 = rk_step(f, y, ts[i], hs[i], ctx.method, ts[i + 1])
                grads = vjp(y1, g, (y, *params))
            f.backpropagated += evals
            g = grads[0] if grads[0] is not None else torch.zeros_like(y)
            step_params = grads_or_zeros(grads[1:], params)
            if grad_params is None:
                grad_params = step_params
            else:
                for acc, gp in zip(grad_params, step_params, strict=True):
                    acc.add_(gp)
        if grad_params is None:
            grad_params = [torch.zeros_like(p) for p in params]
        return (None, None, None, None, g, *grad_params)


def checkpoint_solve(
    f: Any, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    return _Checkpoint.apply(f, spec, t0, t1, y0, *params)
