"""Training state for exact resume: model, optimiser, data-order and CPU RNG state.

Saved after every finished epoch (atomically, next to the run record) and loaded with
`torch.load(..., weights_only=True)`, so a checkpoint file can never run code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from nodecli.atomic import atomic_write_bytes
from nodecli.record.layout import CHECKPOINT_FILE
from nodecli.record.ownership import ensure_owned

STATE_KEYS = ("epoch", "model", "optimizer", "data_generator", "torch_rng")


class ResumeError(RuntimeError):
    """The checkpoint cannot be used to continue this run."""


def save_training_state(
    run_dir: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    run_id: str | None = None,
) -> None:
    """Write checkpoint.pt; RUN_ID (run.json's) ties it to its run, so resume can tell
    another run's checkpoint of the same shapes apart."""
    state: dict[str, Any] = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    # No CUDA generator state: training never draws from it (init and batch order use the
    # CPU generators above), and saving it would start CUDA even for device=cpu runs.
    if run_id is not None:
        state["run_id"] = run_id
    buffer = io.BytesIO()
    torch.save(state, buffer)
    ensure_owned(run_dir)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def _one_line(exc: BaseException) -> str:
    """The first line of EXC's message: PyTorch appends advice (weights_only=False) that
    would be wrong here, since a checkpoint must never be loaded as code."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_training_state(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True) and check its shape; ResumeError if
    it is missing, truncated or not a nodecli checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ResumeError(f"{path} is missing") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise ResumeError(
            f"{path} is damaged or not a nodecli checkpoint ({_one_line(exc)})"
        ) from exc
    if not isinstance(state, dict) or any(key not in state for key in STATE_KEYS):
        raise ResumeError(f"{path} is not a nodecli checkpoint (keys {', '.join(STATE_KEYS)})")
    if not isinstance(state["epoch"], int) or state["epoch"] < 1:
        raise ResumeError(f"{path} names no finished epoch (epoch={state['epoch']!r})")
    return state


def load_training_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> int:
    """Restore everything saved by `save_training_state`; return the last finished epoch."""
    path = run_dir / CHECKPOINT_FILE
    state = read_training_state(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["data_generator"])
        torch.set_rng_state(state["torch_rng"])
        # A "cuda_rng" entry (older checkpoints) is ignored: training never draws from it,
        # and restoring it fails when fewer GPUs are visible than at saving.
        return int(state["epoch"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ResumeError(f"cannot resume from {path}: {_one_line(exc)}") from exc
