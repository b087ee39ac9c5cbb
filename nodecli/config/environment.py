"""Checks of the machine a config will run on (trackers, data, device, peer libraries),
made before anything is written."""

from __future__ import annotations

import sys

from nodecli.config.schema import Config
from nodecli.errors import ConfigError


def check_environment(config: Config) -> None:
    """Checks that need the machine or the disk: the peer library, the dataset files,
    the device. The device comes last: asking for it imports torch (seconds), which the
    other refusals must not wait for."""
    from nodecli.experiment.data import DatasetError, dataset_size, ensure_mnist  # torch-free

    check_backend_installed(config.backend.name)
    try:
        if config.dataset.name == "mnist":
            ensure_mnist(config.dataset.root or "data/mnist", config.dataset.download)
        size = dataset_size(config.dataset.name, config.dataset.root)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from exc
    if config.data.n is not None and config.data.n > size:
        raise ConfigError(
            f"data.n={config.data.n} is larger than the {size} digits of "
            f"dataset={config.dataset.name}; use data.n <= {size} or data.n=null"
        )
    n = size if config.data.n is None else config.data.n
    n_train = round(n * config.data.split)
    if config.dataset.name.startswith("mnist_bundled") and not 1 <= n_train < n:
        raise ConfigError(
            f"data.n={n} with data.split={config.data.split} leaves an empty train or test "
            "set; raise data.n or move data.split away from 0 and 1"
        )
    if config.model.name == "custom":
        from nodecli.config.fields import check_target_found

        check_target_found(config.model)
    if config.device.name == "cuda" and not cuda_driver_present():
        raise ConfigError("device=cuda is not available on this machine; available here: auto, cpu")
    from nodecli.experiment.device import check_compiled_on, resolve_device  # torch

    resolve_device(config.device.name)
    check_compiled_on(config.device.name, config.layer_style.name)
    from nodecli.config.fields import check_field  # imports the user's module, and torch

    check_field(config)  # last: it imports the user's module and builds the field


def check_backend_installed(backend: str) -> None:
    """A peer backend's library must be importable: one line naming the extra if not."""
    from nodecli.backends.registry import PEERS_EXTRA, distribution

    module = distribution(backend)
    if module is not None:
        require_package(f"backend={backend}", module, f"pip install 'nodecli[{PEERS_EXTRA}]'")


def require_package(what: str, module: str, install: str) -> None:
    """WHAT (a backend, a launcher, a sweeper) needs MODULE: one line saying how to
    INSTALL it if it is missing. find_spec looks without importing (the library is
    imported only once the work starts)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{what} needs the {module} package, which is not installed; install it with: {install}"
        )


def cuda_driver_present() -> bool:
    """False only where CUDA certainly cannot work: Linux with neither an NVIDIA device node
    nor the driver library, so device=cuda is refused without importing torch (seconds).
    Anywhere else torch decides (nodecli.experiment.device.resolve_device)."""
    import ctypes.util
    import glob

    if not sys.platform.startswith("linux"):
        return True
    return bool(glob.glob("/dev/nvidia*")) or ctypes.util.find_library("cuda") is not None
