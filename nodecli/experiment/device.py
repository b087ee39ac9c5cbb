"""Device selection and synchronisation for honest timings.

`device=auto` chooses by measurement, not by availability: the reference model is ~490 tiny
kernels a batch, for which a GPU is not obviously faster than one CPU thread. With one
device only (the usual CPU machine) auto is that device, with no measuring; with more,
`fastest` times a few training steps of the experiment on each (nodecli.train supplies
them) and the run trains on the faster. `device=cuda` / `device=mps` are strict: used as
asked, or refused when absent.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from nodecli.errors import ConfigError

if TYPE_CHECKING:  # the type only: config sits above this module
    pass

#: Steps timed per candidate device (after WARMUP_STEPS untimed ones); the median counts.
TIMED_STEPS = 5
WARMUP_STEPS = 2


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if mps_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """Map device=cpu|cuda|mps to a torch.device; never fall back silently.

    `auto` resolves to the CPU here: only training measures (`fastest`), so commands that
    do not train (gradcheck) use the CPU unless a device is named.
    """
    if name in ("auto", "cpu"):
        return torch.device("cpu")
    if name in ("cuda", "mps"):
        if name not in available_devices():
            raise ConfigError(
                f"device={name} is not available on this machine; available here: "
                f"auto, {', '.join(available_devices())}"
            )
        return torch.device(name)
    raise ConfigError(f"device={name} is not valid; valid: auto, cpu, cuda, mps")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock timings cover the work, not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def fastest(
    candidates: list[str], make_step: Callable[[torch.device], Callable[[], None]]
) -> tuple[str, dict[str, float]]:
    """The candidate whose training step is fastest, and each one's median step seconds.

    MAKE_STEP(device) prepares one device (model, batch) and returns a step to time; start-up
    costs (CUDA context, first kernels) fall in the warm-up steps, not in the comparison.
    """
    seconds: dict[str, float] = {}
    for name in candidates:
        device = torch.device(name)
        step = make_step(device)
        for _ in range(WARMUP_STEPS):
            step()
        times = []
        for _ in range(TIMED_STEPS):
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    return min(seconds, key=seconds.__getitem__), seconds


def compiled_cuda_problem() -> str | None:
    """Why layer_style=compiled cannot run on this machine's GPU, or None if it can.

    torch.compile's GPU backend (inductor) generates Triton kernels: it needs the triton
    package, a C compiler for its launcher, and compute capability 7.0 or newer. Checked
    before any work starts, so the run does not fail minutes in, inside the first step.
    """
    import importlib.util
    import os
    import shutil

    if importlib.util.find_spec("triton") is None:
        return "it needs the triton package (pip install triton)"
    compilers = [os.environ.get("CC") or "", "cc", "gcc", "clang"]
    if not any(c and shutil.which(c) for c in compilers):
        return "it needs a C compiler (cc, gcc or clang on PATH, or $CC)"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (7, 0):
        name = torch.cuda.get_device_name()
        return f"it needs compute capability 7.0 or newer; {name} has {major}.{minor}"
    return None


def check_compiled_on(device_name: str, layer_style: str) -> None:
    """device=cuda with layer_style=compiled: refuse with one line if the GPU cannot compile."""
    if layer_style == "compiled" and device_name == "cuda":
        problem = compiled_cuda_problem()
        if problem:
            raise ConfigError(
                f"layer_style=compiled cannot run on device=cuda here: {problem}; "
                "use layer_style=module or functional, or device=cpu"
            )
