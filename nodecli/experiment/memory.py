"""Memory figures of one training step: bytes held for backward, and the peak.

* **hold** (`hold_memory_bytes`): after the forward pass, the bytes of every distinct
  storage that autograd keeps for the backward pass, seen through a
  `torch.autograd.graph.saved_tensors_hooks` pack hook (it sees each tensor an op saves,
  including `ctx.save_for_backward` in custom autograd Functions). Storages are counted
  once (by data pointer), with their full size (`untyped_storage().nbytes()`); the model
  parameters and the input batch are left out (they are held anyway). Same definition on
  every device.
* **peak** (`peak_memory_bytes`): the highest memory in use during forward + backward of
  the step, above what was allocated when the step began. On CUDA: the caching
  allocator's `max_memory_allocated` (after `reset_peak_memory_stats`) minus
  `memory_allocated` at the start. On CPU: PyTorch's profiler with `profile_memory=True`;
  its allocation/free events, in time order, summed to a running total whose maximum is
  the peak. NaN where neither is available (e.g. MPS), and on CPU for a step of more
  than PROFILE_MAX_EVALUATIONS evaluations: the profiler keeps an event per operation,
  gigabytes for a long solve (a long model.t1 took the machine's memory).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # types only: the model and data modules are above this one
    from nodecli.experiment.data import DataSplit
    from nodecli.experiment.model import NeuralODEClassifier


@dataclass
class SavedBytes:
    """Running count of distinct storages saved for backward."""

    exclude: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    bytes: int = 0
    tensors: int = 0

    def pack(self, t: Tensor) -> Tensor:
        self.tensors += 1
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            self.bytes += storage.nbytes()
        return t


@contextmanager
def saved_for_backward(exclude: Iterable[Tensor] = ()) -> Iterator[SavedBytes]:
    """Count the bytes autograd saves for backward inside the block."""
    acc = SavedBytes(exclude={t.untyped_storage().data_ptr() for t in exclude})
    with torch.autograd.graph.saved_tensors_hooks(acc.pack, lambda t: t):
        yield acc


@dataclass
class StepMemory:
    hold_bytes: float
    peak_bytes: float


def _cpu_peak(prof: torch.autograd.profiler.profile) -> float:
    try:
        events = prof.kineto_results.events()  # type: ignore[union-attr]
        deltas = sorted(
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        )
    except Exception:  # the profiler's result API is not public: degrade to "unknown"
        return math.nan
    total = peak = 0
    for _, delta in deltas:
        total += delta
        peak = max(peak, total)
    return float(peak)


def measure_step(
    forward: Callable[[], Tensor], device: torch.device, exclude: Iterable[Tensor] = ()
) -> StepMemory:
    """Run FORWARD() → scalar loss, then its backward, and measure hold and peak memory.

    Gradients accumulate into .grad as in training; the caller clears them.
    """
    exclude = list(exclude)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with saved_for_backward(exclude) as saved:
            loss = forward()
        loss.backward()
        torch.cuda.synchronize(device)
        peak = float(torch.cuda.max_memory_allocated(device) - base)
        return StepMemory(float(saved.bytes), peak)
    if device.type == "cpu":
        # The autograd profiler directly: torch.profiler.profile's start probes
        # `hasattr(torch, "_inductor")`, which imports inductor and dynamo (~2 s per process).
        from torch.autograd.profiler import profile

        # Kineto logs an ERROR line (no GPU found) and two USDT lines to stderr on every
        # profile of a CPU-only machine; 6 silences them unless the user chose a level.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")

        with profile(profile_memory=True, use_kineto=True) as prof:
            with saved_for_backward(exclude) as saved:
                loss = forward()
            loss.backward()
            del loss
        return StepMemory(float(saved.bytes), _cpu_peak(prof))
    with saved_for_backward(exclude) as saved:
        loss = forward()
    loss.backward()
    return StepMemory(float(saved.bytes), math.nan)


#: CPU steps with more vector-field evaluations than this (forward and backward) are not
#: profiled: their peak is NaN ("n/a"), their held bytes are still measured.
PROFILE_MAX_EVALUATIONS = 5_000


class MemoryProbe:
    """Hold and peak memory of one training step on the first training batch.

    Runs after the epoch, outside the timed loop; no optimiser step, gradients cleared,
    the ODE block's counters restored: training is unaffected. The module docstring says
    exactly what the two numbers measure.

    On CPU the peak needs the profiler (~10 ms a probe, most of a sweep job's overhead
    besides Hydra). The peak is a function of the step's operation sequence, which is
    fixed by its evaluation counts and the bytes it holds: every CPU probe first measures
    the held bytes alone (saved-tensor hooks, no profiler); one whose (forward
    evaluations, backward evaluations, held bytes) were seen before reuses that peak, one
    of more than PROFILE_MAX_EVALUATIONS evaluations has none, the others are profiled.
    """

    def __init__(self) -> None:
        self._peaks: dict[tuple[int, int, int], float] = {}

    def __call__(
        self, model: NeuralODEClassifier, data: DataSplit, batch_size: int, device: torch.device
    ) -> StepMemory:
        xb, yb = data.x_train[:batch_size], data.y_train[:batch_size]
        counter = model.ode.counter
        counts = counter.snapshot()
        exclude = [*model.parameters(), xb]
        result: StepMemory | None = None
        if device.type == "cpu":
            with saved_for_backward(exclude) as saved:
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            del loss
            key = self._key(counts, counter.snapshot(), saved.bytes)
            peak = self._peaks.get(key)
            if key[0] + key[1] > PROFILE_MAX_EVALUATIONS:
                result = StepMemory(float(saved.bytes), math.nan)
            elif peak is not None:
                result = StepMemory(float(saved.bytes), peak)
            else:  # another operation sequence: profile it
                counter.restore(counts)
                model.zero_grad(set_to_none=True)
        if result is None:
            result = measure_step(lambda: F.cross_entropy(model(xb), yb), device, exclude=exclude)
            key = self._key(counts, counter.snapshot(), int(result.hold_bytes))
            self._peaks[key] = result.peak_bytes
        counter.restore(counts)
        model.zero_grad(set_to_none=True)
        return result

    @staticmethod
    def _key(
        before: tuple[int, int, int], after: tuple[int, int, int], held: int
    ) -> tuple[int, int, int]:
        """(evaluations, backward VJPs, held bytes) of one probe step."""
        return after[0] - before[0], after[1] - before[1], held
