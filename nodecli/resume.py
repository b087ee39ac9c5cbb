"""Training state for exact resume: model, optimiser, data-order and global RNG state.

Saved after every finished epoch (atomically, next to the run record) and loaded with
`torch.load(..., weights_only=True)`, so a checkpoint file can never run code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from nodecli.runs import CHECKPOINT_FILE, atomic_write_bytes


class ResumeError(RuntimeError):
    """The checkpoint cannot be used to continue this run."""


def save_training_state(
    run_dir: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    state: dict[str, Any] = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data_generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_training_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> int:
    """Restore everything saved by `save_training_state`; return the last finished epoch."""
    path = run_dir / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["data_generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["epoch"])
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResumeError(f"cannot resume from {path}: {reason}") from exc
