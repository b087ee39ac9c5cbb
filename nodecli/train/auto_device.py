"""device=auto: measure a few training steps on each available device and train on the
fastest; one measurement per experiment shape, so a sweep measures each shape once."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nodecli.config.schema import Config

# Module access, not names: tests and device=auto's callers patch available_devices there.
from nodecli.experiment import device as devices

#: device=auto's measurements, per experiment shape, so a sweep measures each shape once.
_AUTO_CHOICES: dict[tuple, tuple[str, dict[str, float]]] = {}


def choose_device(
    cfg: Config, make_step: Callable[[], Callable[[torch.device], Callable[[], None]]]
) -> tuple[torch.device, dict[str, float] | None]:
    """The device to train on and, for device=auto with several devices, each one's
    measured step seconds. MAKE_STEP() builds `fastest`'s step factory (nodecli.train
    supplies it); it is called only when there is something to measure."""
    if cfg.device.name != "auto":
        return devices.resolve_device(cfg.device.name), None
    candidates = devices.available_devices()
    if (
        cfg.layer_style.name == "compiled"
        and "cuda" in candidates
        and devices.compiled_cuda_problem()
    ):
        candidates.remove("cuda")
    if len(candidates) == 1:
        return torch.device(candidates[0]), None
    key = (
        tuple(candidates),
        cfg.backend.name,
        cfg.layer_style.name,
        cfg.sensealg.name,
        cfg.solver.method,
        cfg.train.batch_size,
        cfg.model.latent,
        cfg.model.hidden,
    )
    if key not in _AUTO_CHOICES:
        _AUTO_CHOICES[key] = devices.fastest(candidates, make_step())
    name, seconds = _AUTO_CHOICES[key]
    return torch.device(name), seconds
