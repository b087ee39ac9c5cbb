"""Provenance of a run: the command line that started it and the versions that decide
its numbers (run.json's `argv` and `versions`)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

_command_line: list[str] = []


def set_command_line(argv: list[str]) -> None:
    """The full command line (subcommand included) that run.json records as argv;
    Hydra's main only ever sees the overrides."""
    _command_line[:] = argv


def command_line() -> list[str]:
    return list(_command_line) or list(sys.argv)


def dist_version(name: str) -> str:
    """An installed distribution's version from its metadata (no import needed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions(peer: str | None = None) -> dict[str, str]:
    """Versions that decide the numbers a run produces, the PEER library's (the
    distribution that backend= solves with) included.

    Library versions come from the package metadata: importing torchdiffeq pulls in scipy
    (~0.7 s), which a `sensealg=direct` run never needs.
    """
    import torch

    import nodecli

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": dist_version("torchdiffeq"),
        "nodecli": nodecli.__version__,
    }
    if peer is not None:
        found[peer] = dist_version(peer)
    return found
