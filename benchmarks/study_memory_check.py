"""Cross-check of the memory columns (hold, peak) against the operating system's count.

For one training step on the first batch (what `MemoryProbe` measures each epoch), this
prints, per sensealg, nodecli's `hold_memory_bytes` / `peak_memory_bytes` beside an
independent measurement from the process's resident memory:

* glibc is told (MALLOC_MMAP_THRESHOLD_, set before Python starts: this script re-executes
  itself) to serve every allocation of 16 KiB or more by its own mmap, so a freed tensor
  leaves the resident set at once;
* **allocated after forward** = the net bytes of the CPU allocator's allocation and free
  events during the forward pass (PyTorch's profiler; another source than the saved-tensor
  hooks behind `hold_memory_bytes`): what the forward pass left alive;
* **resident after forward** = RSS after the forward pass - RSS before it (the graph's saved
  tensors, the loss, and whatever else the forward left alive);
* **resident peak** = VmHWM (reset through /proc/self/clear_refs) during forward + backward
  - RSS before the step.

Also printed: the field evaluations of the forward pass and the bytes one evaluation of the
MLP field saves for backward (by hand: its three tanh outputs and its input: 4 bytes ×
batch × (2·hidden + 2·latent)), whose product is what `direct` must hold at least.

    .venv/bin/python benchmarks/study_memory_check.py model.hidden=1024 model.t1=4
"""

from __future__ import annotations

import os
import sys

THRESHOLD = "16384"

if os.environ.get("MALLOC_MMAP_THRESHOLD_") != THRESHOLD:  # glibc reads it at start-up
    os.environ["MALLOC_MMAP_THRESHOLD_"] = THRESHOLD
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nodecli.config.compose import compose_config  # noqa: E402
from nodecli.experiment.data import load_dataset  # noqa: E402
from nodecli.experiment.memory import MemoryProbe  # noqa: E402
from nodecli.train.loop import model_for  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
METHODS = ("direct", "adjoint", "checkpoint", "interpolating", "gauss")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def resident_step(model, xb, yb) -> tuple[int, int, int]:
    """(resident after forward, resident peak, forward evaluations) of one step."""
    counter = model.ode.counter
    before_counts = counter.snapshot()
    base = rss()
    reset_hwm()
    loss = F.cross_entropy(model(xb), yb)
    after_forward = rss() - base
    evals = counter.snapshot()[0] - before_counts[0]
    loss.backward()
    del loss
    peak = hwm() - base
    counter.restore(before_counts)
    model.zero_grad(set_to_none=True)
    return after_forward, peak, evals


def allocated_after_forward(model, xb, yb) -> int:
    """Net bytes the CPU allocator handed out during the forward pass (still alive)."""
    from torch.autograd.profiler import profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(profile_memory=True, use_kineto=True) as prof:
        loss = F.cross_entropy(model(xb), yb)
    net = sum(
        e.nbytes()
        for e in prof.kineto_results.events()  # type: ignore[union-attr]
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    counts = model.ode.counter.snapshot()
    loss.backward()
    del loss
    model.ode.counter.restore(counts)
    model.zero_grad(set_to_none=True)
    return net


def main(overrides: list[str]) -> None:
    torch.set_num_threads(1)
    kib = 1024.0
    print(f"overrides: {' '.join(overrides)}")
    print(
        f"{'sensealg':>13} {'evals':>5} {'hold KiB':>10} {'allocated after fwd KiB':>24}"
        f" {'resident after fwd KiB':>23}"
        f" {'peak KiB':>10} {'resident peak KiB':>18}"
    )
    for method in METHODS:
        cfg = compose_config([f"sensealg={method}", "device=cpu", *overrides])
        torch.manual_seed(cfg.seed)
        data = load_dataset(cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed)
        model = model_for(cfg)
        bs = cfg.train.batch_size
        xb, yb = data.x_train[:bs], data.y_train[:bs]
        resident_step(model, xb, yb)  # warm-up: first-call allocations, lazy imports
        fwd, peak, evals = resident_step(model, xb, yb)
        allocated = allocated_after_forward(model, xb, yb)
        probe = MemoryProbe()(model, data, bs, torch.device("cpu"))
        print(
            f"{method:>13} {evals:>5} {probe.hold_bytes / kib:>10.0f} {allocated / kib:>24.0f}"
            f" {fwd / kib:>23.0f}"
            f" {probe.peak_bytes / kib:>10.0f} {peak / kib:>18.0f}"
        )
        if method == "direct" and cfg.model.name == "mlp":
            per_eval = 4 * len(xb) * (2 * cfg.model.hidden + 2 * cfg.model.latent)
            print(
                f"{'':>13} by hand: {evals} evaluations × {per_eval / kib:.0f} KiB saved per"
                f" evaluation = {evals * per_eval / kib:.0f} KiB"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
