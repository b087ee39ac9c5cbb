"""Device selection and synchronisation for honest timings."""

from __future__ import annotations

import torch

from nodecli.errors import ConfigError


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
    """Map device=auto|cpu|cuda|mps to a torch.device; never fall back silently."""
    if name == "auto":
        return torch.device(available_devices()[1] if len(available_devices()) > 1 else "cpu")
    if name == "cpu":
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
