"""layer_style=compiled: one whole Runge–Kutta step through `torch.compile`.

Why the step and not just the vector field? The reference MLP is three (128, 20)-sized
layers: each op costs microseconds of framework overhead and nanoseconds of arithmetic.
A compiled vector field alone measured *slower* than eager on CPU (each call pays dynamo's
guards and an autograd.Function wrapper, more than the fused MLP saves). Compiling the
whole step (6 Tsit5 stages, the stage combinations and the error norm) turns ~90 eager
ops and ~75 backward nodes into one call and one backward node.

The step computes exactly what `nodecli.ode.solver` computes eagerly (same coefficients,
same controller inputs); inductor may reorder float ops, so results agree to rounding,
not bit for bit (tests/test_compiled.py).

Shapes: compiled with `dynamic=True`, so the batch dimension is symbolic and the smaller
last batch reuses the same graph instead of recompiling every epoch. Step sizes and stage
times enter as one coefficient tensor, never as Python floats (a float would be baked into
the graph and recompile every step); on an accelerator that tensor is computed there from
the tableau kept on the device, with no per-step host→device copy. Without grad
(evaluation) the same step runs eagerly: compiling a second, inference-only graph would
cost more than two evaluations a epoch save.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from nodecli.ode.tableaus import TABLEAUS

Field = Callable[[Sequence[Tensor], Tensor, Tensor], Tensor]  # (params, t, y) -> dy/dt


class CompiledStep:
    """A `solver.Stepper` for FIELD with explicit PARAMS: (y, f0, t, h) -> (y1, k_last, err).

    `on_evaluations(n)` is told about the n vector-field evaluations each step makes (they
    happen inside the compiled graph, out of reach of a counting wrapper).
    """

    def __init__(
        self,
        field: Field,
        params: Sequence[Tensor],
        method: str,
        rtol: float,
        atol: float,
        on_evaluations: Callable[[int], None] = lambda n: None,
    ) -> None:
        tab = TABLEAUS[method]
        if not tab.adaptive:
            raise ValueError(f"CompiledStep needs an adaptive method, got {method!r}")
        self.field, self.params = field, list(params)
        self.rtol, self.atol = float(rtol), float(atol)
        self.on_evaluations = on_evaluations
        self.fsal = tab.fsal
        self.n_evals = tab.n_stages - 1
        self.c = tab.c[1:]
        # Nonzero coefficients as (stage, j, a_ij); their h-scaled values travel in one tensor.
        self.a_terms = [
            [(j, a) for j, a in enumerate(tab.a[i]) if a != 0.0] for i in range(1, tab.n_stages)
        ]
        self.b_terms = [] if tab.fsal else [(j, b) for j, b in enumerate(tab.b) if b != 0.0]
        self.e_terms = [(j, e) for j, e in enumerate(tab.b_err or ()) if e != 0.0]
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self.compile_time_s = 0.0
        self._compiled = torch.compile(self._step, dynamic=True)

    def _coefficients(self, t: float, h: float, like: Tensor) -> Tensor:
        """[stage times, h*a_ij, h*b_j (non-FSAL), h*e_j] in float64, then cast once.

        On the CPU they are built from Python floats. On an accelerator that would be a
        blocking host→device copy every step, so there the tableau lives on the device
        (once) and t, h enter as kernel scalars: the same float64 products and sums,
        hence the same values.
        """
        if like.device.type in ("cpu", "mps"):  # mps has no float64
            return torch.tensor(self._values(t, h), dtype=like.dtype, device=like.device)
        return self.device_coefficients(t, h, like)

    def _values(self, t: float, h: float) -> list[float]:
        values = [t + c * h for c in self.c]
        for terms in (*self.a_terms, self.b_terms, self.e_terms):
            values.extend(h * x for _, x in terms)
        return values

    def device_coefficients(self, t: float, h: float, like: Tensor) -> Tensor:
        """`_coefficients` from tableau tensors kept on LIKE's device (float64)."""
        tables = self._tables.get(like.device)
        if tables is None:
            xs = [x for terms in (*self.a_terms, self.b_terms, self.e_terms) for _, x in terms]
            tables = (
                torch.tensor(self.c, dtype=torch.float64, device=like.device),
                torch.tensor(xs, dtype=torch.float64, device=like.device),
            )
            self._tables[like.device] = tables
        c, xs = tables
        return torch.cat([(c * h).add_(t), xs * h]).to(like.dtype)

    def _step(self, params: list[Tensor], y: Tensor, f0: Tensor, coef: Tensor):
        n_t = len(self.c)
        k = n_t  # read position in coef
        ks = [f0]
        yi = y
        for i, terms in enumerate(self.a_terms):
            yi = y
            for j, _ in terms:
                yi = yi + coef[k] * ks[j]
                k += 1
            ks.append(self.field(params, coef[i], yi))
        y1 = yi
        if not self.fsal:
            y1 = y
            for j, _ in self.b_terms:
                y1 = y1 + coef[k] * ks[j]
                k += 1
        err = torch.zeros_like(y)
        for j, _ in self.e_terms:
            err = err + coef[k] * ks[j].detach()
            k += 1
        tol = torch.maximum(y.detach().abs(), y1.detach().abs()) * self.rtol + self.atol
        rms = (err / tol).square().mean().sqrt()
        return y1, ks[-1], rms

    def __call__(self, y: Tensor, f0: Tensor, t: float, h: float):
        self.on_evaluations(self.n_evals)
        coef = self._coefficients(t, h, y)
        if torch.is_grad_enabled():
            return self._compiled(self.params, y, f0, coef)
        return self._step(self.params, y, f0, coef)

    def warm_up(self, state_shape: Sequence[int], like: Tensor) -> float:
        """Compile forward and backward now, on a dummy state of STATE_SHAPE (batch first)
        with LIKE's dtype and device; returns the seconds it took.

        Gradients are taken with autograd.grad, so the parameters' .grad stay untouched.
        """
        y = torch.rand(*state_shape, dtype=like.dtype, device=like.device, requires_grad=True)
        f0 = torch.rand_like(y, requires_grad=True)
        start = time.perf_counter()
        y1, k_last, rms = self._compiled(self.params, y, f0, self._coefficients(0.0, 0.1, y))
        trainable = [p for p in self.params if p.requires_grad]
        torch.autograd.grad((y1.sum() + k_last.sum()), [y, f0, *trainable])
        float(rms)  # waits for the device
        elapsed = time.perf_counter() - start
        self.compile_time_s += elapsed
        return elapsed
