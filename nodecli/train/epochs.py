"""One epoch's results and how a run prints them: the reference tutorial's epoch line and
the per-epoch table at the end of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.table import Table


@dataclass
class EpochResult:
    epoch: int
    train_time_s: float
    train_loss: float
    train_acc: float
    test_acc: float
    nfe_forward: int
    nfe_backward: int
    hold_memory_bytes: float
    peak_memory_bytes: float
    compile_time_s: float = 0.0  # layer_style=compiled: the part of train_time_s compiling

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def format_epoch_line(epoch: int, epochs: int, r: EpochResult) -> str:
    """The reference tutorial's exact per-epoch line."""
    return (
        f"[{epoch}/{epochs}]\tTime {r.train_time_s:.4f}s\t"
        f"Training Accuracy: {r.train_acc:.5f}%\tTest Accuracy: {r.test_acc:.5f}%"
    )


def epochs_table(results: list[EpochResult]) -> Table:
    table = Table(title="nodecli: per-epoch results")
    for name in (
        "epoch",
        "time (s)",
        "loss",
        "train acc (%)",
        "test acc (%)",
        "NFE fwd",
        "NFE bwd",
        "held (KiB)",
        "peak (KiB)",
    ):
        table.add_column(name, justify="right")
    for r in results:
        table.add_row(
            str(r.epoch),
            f"{r.train_time_s:.4f}",
            f"{r.train_loss:.4f}",
            f"{r.train_acc:.2f}",
            f"{r.test_acc:.2f}",
            str(r.nfe_forward),
            str(r.nfe_backward),
            f"{r.hold_memory_bytes / 1024:.1f}",
            "n/a" if math.isnan(r.peak_memory_bytes) else f"{r.peak_memory_bytes / 1024:.1f}",
        )
    return table
