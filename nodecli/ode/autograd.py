"""Autograd helpers of the adjoint methods: vector-Jacobian products and flat states.

The adjoint methods (adjoint, checkpoint, interpolating, gauss) build their backward
passes from these. Invariant: a vector-Jacobian product never fails because the field
ignores an input. `vjp`/`vjps` return None for an input the output does not depend on,
also when the output depends on no input at all (a field of t alone, or a constant);
`grads_or_zeros` turns those Nones into zeros where a tensor is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["flat_cat", "grads_or_zeros", "mixed_norm", "split_flat", "vjp", "vjps"]

try:  # the autograd engine's entry point, as torch.autograd.grad calls it
    from torch.autograd import Variable

    _run_backward = Variable._execution_engine.run_backward  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - other torch versions
    _run_backward = None


def vjp(output: Tensor, cotangent: Tensor, inputs: tuple[Tensor, ...]) -> tuple:
    """cotangentᵀ ∂output/∂inputs (None for inputs output does not depend on).

    Same as `torch.autograd.grad(output, inputs, cotangent, allow_unused=True)` without
    its Python-side argument normalisation: called once per backward evaluation by the
    adjoint methods, where that overhead measured ≈ 30 µs of ≈ 340 µs per call. An
    OUTPUT outside autograd (it depends on none of the inputs) gives all None.
    """
    if not output.requires_grad:
        return (None,) * len(inputs)
    if _run_backward is not None and cotangent.shape == output.shape:
        return _run_backward((output,), (cotangent,), False, False, inputs, True, False)
    return torch.autograd.grad(output, inputs, cotangent, allow_unused=True)


def vjps(
    outputs: Sequence[Tensor], cotangents: Sequence[Tensor], inputs: Sequence[Tensor]
) -> tuple:
    """Σ_k cotangents[k]ᵀ ∂outputs[k]/∂inputs in one backward pass: `vjp` for several
    outputs (gauss's quadrature nodes). `vjp` keeps its own one-output path: it runs once
    per adjoint evaluation, where these tuple conversions cost ≈ 1.5 µs a call. Outputs
    outside autograd contribute nothing; with no input at all the result is ()."""
    inputs = tuple(inputs)
    pairs = [(o, c) for o, c in zip(outputs, cotangents, strict=True) if o.requires_grad]
    if not pairs or not inputs:
        return (None,) * len(inputs)
    outputs, cotangents = tuple(o for o, _ in pairs), tuple(c for _, c in pairs)
    if _run_backward is not None and all(
        c.shape == o.shape for o, c in zip(outputs, cotangents, strict=True)
    ):
        return _run_backward(outputs, cotangents, False, False, inputs, True, False)
    return torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)


def mixed_norm(sizes: Sequence[int], use: int | None = None) -> Callable[[Tensor], Tensor]:
    """Max over parts of the RMS norm of each part of a flat state (torchdiffeq's norm
    for tuple states). The flat state is the concatenation of parts of SIZES; only the
    first USE parts enter the norm (a seminorm leaves the parameter adjoints out)."""
    use = len(sizes) if use is None else use
    bounds = []
    start = 0
    for size in sizes[:use]:
        if size:
            bounds.append((start, start + size, 1.0 / math.sqrt(size)))
        start += size

    def norm(x: Tensor) -> Tensor:
        parts = [torch.linalg.vector_norm(x[a:b]) * s for a, b, s in bounds]
        if len(parts) == 1:
            return parts[0]
        return torch.stack(parts).max()

    return norm


def flat_cat(tensors: Sequence[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """The tensors flattened and concatenated into one new 1-D tensor (of DTYPE if given:
    the adjoint state's, where a parameter has another dtype than the state).

    One C++ call (the one DistributedDataParallel flattens buckets with) instead of a
    `reshape` per tensor and a `cat`: ≈ 4 µs less per backward evaluation of the adjoint
    methods, which build their augmented derivative with it. Copies only: same values.
    """
    tensors = list(tensors)
    if dtype is not None and any(x.dtype != dtype for x in tensors):
        tensors = [x.to(dtype) for x in tensors]
    return torch._C._nn.flatten_dense_tensors(tensors)


def split_flat(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Per-parameter gradients from a flat vector, shaped and typed like PARAMS."""
    out = []
    start = 0
    for p in params:
        n = p.numel()
        out.append(flat[start : start + n].view_as(p).to(p.dtype))
        start += n
    return out


def grads_or_zeros(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    """GRADS with each None replaced by zeros shaped like the matching tensor of LIKE."""
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, like, strict=True)]
