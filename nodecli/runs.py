"""The run record: the contract between `nodecli train` and `nodecli report`.

A run directory holds `.hydra/` (written by Hydra), `metrics.csv` (one row per finished
epoch), `run.json` (status, times, versions, device) and `checkpoint.pt` (for resume).
Every write goes to a temporary file in the same directory and is renamed into place,
so a killed process never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.csv"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = ".hydra/config.yaml"  # written by Hydra
# Sweep resume moves a job's earlier record into <job dir>/attempts/<n>/.
ATTEMPTS_DIR = "attempts"

METRIC_COLUMNS = (
    "epoch",
    "train_time_s",
    "train_loss",
    "train_acc",
    "test_acc",
    "nfe_forward",
    "nfe_backward",
    "hold_memory_bytes",
    "peak_memory_bytes",
    "compile_time_s",
)

STATUSES = ("running", "completed", "failed", "interrupted")
# A running record refreshes heartbeat_at at least this often (and after every epoch);
# the report treats a "running" record whose heartbeat is much older as dead.
HEARTBEAT_INTERVAL_S = 30.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write DATA to PATH so that readers see either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dist_version(name: str) -> str:
    """An installed distribution's version from its metadata (no import needed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Versions that decide the numbers a run produces.

    torchdiffeq's version comes from the package metadata: importing it pulls in scipy
    (~0.7 s), which a `sensealg=direct` run never needs.
    """
    import torch

    import nodecli

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": dist_version("torchdiffeq"),
        "nodecli": nodecli.__version__,
    }


@dataclass
class RunRecord:
    """Writes one run's record; every method leaves the files consistent on disk."""

    run_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    _last_beat: float = field(default=0.0, repr=False)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def run_path(self) -> Path:
        return self.run_dir / RUN_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def start(self, device: str, threads: int, overrides: list[str], resumed: bool = False) -> None:
        """Mark the run as running; on resume keep the rows and start time already there."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resumed:
            self.info = read_run_json(self.run_dir)
            self.rows = read_metrics_rows(self.run_dir)
            self.info.setdefault("resumed_at", []).append(now_iso())
        else:
            self.info = {"started_at": now_iso()}
        self.info.update(
            status="running",
            error=None,
            ended_at=None,
            heartbeat_at=now_iso(),
            epochs_completed=len(self.rows),
            versions=versions(),
            device=device,
            threads=threads,
            overrides=overrides,
            argv=sys.argv,
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        self._write_json()
        self._write_metrics()

    def append_epoch(self, metrics: dict[str, Any]) -> None:
        """Record one finished epoch (the whole CSV is rewritten atomically; it is tiny)."""
        self.rows.append({key: metrics.get(key, "") for key in METRIC_COLUMNS})
        self._write_metrics()
        self.info["epochs_completed"] = len(self.rows)
        self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh the liveness timestamp so a hard-killed run can be told from a live one."""
        self.info["heartbeat_at"] = now_iso()
        self._last_beat = time.monotonic()
        self._write_json()

    def maybe_heartbeat(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        """Heartbeat at most every INTERVAL_S seconds (cheap enough to call per batch)."""
        if time.monotonic() - self._last_beat >= interval_s:
            self.heartbeat()

    def truncate(self, n_epochs: int) -> None:
        """Keep the first N_EPOCHS rows: those the resume checkpoint covers."""
        self.rows = self.rows[:n_epochs]
        self.info["epochs_completed"] = len(self.rows)
        self._write_metrics()
        self._write_json()

    def finish(self, status: str, error: str | None = None, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.info.update(status=status, error=error, ended_at=now_iso(), **extra)
        self._write_metrics()
        self.heartbeat()

    def _write_json(self) -> None:
        atomic_write_text(self.run_path, json.dumps(self.info, indent=2, default=str) + "\n")

    def _write_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.metrics_path, buffer.getvalue())


def read_run_json(run_dir: Path) -> dict[str, Any]:
    with open(run_dir / RUN_FILE, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{run_dir / RUN_FILE} does not hold a JSON object")
    return data


def read_metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def process_alive(pid: object, host: object) -> bool:
    """True if PID is a live process on this host; a record from another host, or without
    a usable pid, cannot be checked from here and counts as not alive."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).is_file()
