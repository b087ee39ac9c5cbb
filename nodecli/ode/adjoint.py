"""sensealg=adjoint: nodecli's own continuous backsolve adjoint.

Forward: y(t1) from `integrate` without autograd; only y(t1) is kept. Backward: the
augmented state a = [y, λ, μ] (flattened into one vector) is integrated from t1 back to
t0 with nodecli's own solver:

    dy/dt = f(t, y),   dλ/dt = -λᵀ ∂f/∂y,   dμ/dt = -λᵀ ∂f/∂p,
    y(t1) = forward result, λ(t1) = ∂L/∂y(t1), μ(t1) = 0,

so that λ(t0) = ∂L/∂y0 and μ(t0) = ∂L/∂p. Each evaluation costs one vector-field call and
one batched VJP (`torch.autograd.grad` w.r.t. (y, params)). The error norm is torchdiffeq's
for tuple states, max over the parts' RMS norms; `seminorm` leaves μ out of it (Kidger et
al. 2021, "Hey, that's not an ODE"). Tolerances: `adjoint_rtol`/`adjoint_atol`, defaulting
to the forward ones. The backward solve starts with the forward solve's last accepted
step size (saving the initial-step probe, which would cost an evaluation and a VJP).
Memory held for backward: y(t1) only, whatever the number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nodecli.ode.autograd import flat_cat, grads_or_zeros, mixed_norm, split_flat, vjp
from nodecli.ode.spec import SolveSpec, backward_solve, forward_solve


class _Backsolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, f: Any, spec: Any, t0: float, t1: float, y0: Tensor, *params: Tensor):
        sol = forward_solve(f, y0, t0, t1, spec.solver, record=True)
        y1 = sol.y1
        ctx.f, ctx.spec, ctx.t0, ctx.t1 = f, spec, t0, t1
        ctx.first_step = abs(sol.hs[-1]) if sol.hs else None
        del sol
        ctx.save_for_backward(y1, *params)
        return y1

    @staticmethod
    def backward(ctx: Any, grad_y1: Tensor):
        y1, *params = ctx.saved_tensors
        f, spec = ctx.f, ctx.spec
        shape = y1.shape
        n = y1.numel()
        n_p = sum(p.numel() for p in params)
        # a parameter of another dtype than the state: its adjoint is carried in the state's
        cast = y1.dtype if any(p.dtype != y1.dtype for p in params) else None

        def augmented(t: float, a: Tensor) -> Tensor:
            y, lam = a[: 2 * n].view(2, *shape).unbind()  # the two halves, as views
            with torch.enable_grad():
                y = y.detach().requires_grad_()
                fy = f(t, y)
                grads = vjp(fy, lam, (y, *params))
            f.backpropagated += 1
            if any(g is None for g in grads):  # f ignores y or a parameter
                grads = grads_or_zeros(grads, (y, *params))
            out = flat_cat([fy, *grads], cast)  # under no_grad (backward_solve): fy's graph ends
            out[n:].neg_()
            return out

        a1 = torch.cat([y1.reshape(-1), grad_y1.reshape(-1), y1.new_zeros(n_p)])
        norm = mixed_norm((n, n, n_p), use=2 if spec.sensealg.seminorm else 3)
        with torch.no_grad():
            a0 = backward_solve(
                augmented, a1, ctx.t1, ctx.t0, spec, norm, first_step=ctx.first_step
            ).y1
        grad_y0 = a0[n : 2 * n].view(shape)
        return (None, None, None, None, grad_y0, *split_flat(a0[2 * n :], params))


def backsolve_solve(
    f: Any, y0: Tensor, params: Sequence[Tensor], t0: float, t1: float, spec: SolveSpec
) -> Tensor:
    return _Backsolve.apply(f, spec, t0, t1, y0, *params)
