"""Adam for nodecli's training loop: torch.optim.Adam's default update, in seven calls.

Why not `torch.optim.Adam`? For this 16k-parameter model the optimiser is pure overhead:
its per-step machinery (profiling hooks, dynamo guards, a Python loop over the 8
parameter tensors with ~8 ops each) costs ~10% of an epoch, and its first use imports
`torch._dynamo` (~2 s, a quarter of a whole `nodecli train`). This class performs the
same arithmetic as torch's default single-tensor Adam (amsgrad off, no weight decay), one
`torch._foreach_*` call per line of the algorithm, so results match torch.optim.Adam
(tests/test_optim.py). Its `state_dict` uses torch.optim.Adam's layout, so checkpoints
load into either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma & Ba 2015) over one group of parameters."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = 0
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' current `.grad` (all must have one)."""
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("Adam.step: a parameter has no gradient; call backward() first")
        beta1, beta2 = self.betas
        self.steps += 1
        bias_correction1 = 1.0 - beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.steps)
        torch._foreach_lerp_(self.exp_avg, grads, 1.0 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1.0 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -self.lr / bias_correction1)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Adam's layout: per-parameter state by index, and one param group."""
        return {
            "state": {
                i: {
                    "step": torch.tensor(float(self.steps)),
                    "exp_avg": m.clone(),
                    "exp_avg_sq": v.clone(),
                }
                for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True))
            }
            if self.steps
            else {},
            "param_groups": [
                {
                    "lr": self.lr,
                    "betas": self.betas,
                    "eps": self.eps,
                    "weight_decay": 0.0,
                    "amsgrad": False,
                    "maximize": False,
                    "params": list(range(len(self.params))),
                }
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by this class or by torch.optim.Adam (one group, same params)."""
        (group,) = state_dict["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError("optimizer state holds a different number of parameters")
        self.lr, self.betas, self.eps = group["lr"], tuple(group["betas"]), group["eps"]
        state = state_dict["state"]
        if not state:
            self.steps = 0
            return
        for i, key in enumerate(group["params"]):
            s = state[key]
            self.exp_avg[i].copy_(s["exp_avg"])
            self.exp_avg_sq[i].copy_(s["exp_avg_sq"])
        self.steps = int(float(state[group["params"][0]]["step"]))
