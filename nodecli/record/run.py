"""The run record: the contract between `nodecli train` and `nodecli report`.

A run directory holds `.hydra/` (written by Hydra), `metrics.csv` (one row per finished
epoch), `run.json` (status, times, versions, device) and `checkpoint.pt` (for resume).
Every write goes to a temporary file in the same directory and is renamed into place,
so a killed process never leaves a half-written file behind, and only after checking
that this process still owns the folder (nodecli.record.ownership).

This module is also the only reader of record files: `read_run_json`, `read_metrics`,
`read_config`, and the one liveness rule `run_state`, used by resume, sweep and report.
(`process_alive` lives in nodecli.record.ownership, which claims folders with it; re-exported.)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodecli.atomic import atomic_write_text
from nodecli.record.ownership import ClaimLost, claim_folder, ensure_owned
from nodecli.record.provenance import command_line, versions
from nodecli.record.read import read_metrics_rows, read_run_json

if TYPE_CHECKING:
    pass
from nodecli.record.layout import (
    CHECKPOINT_FILE,
    HEARTBEAT_INTERVAL_S,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUN_FILE,
    STATUSES,
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunRecord:
    """Writes one run's record; every method leaves the files consistent on disk."""

    run_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def run_path(self) -> Path:
        return self.run_dir / RUN_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def start(
        self,
        device: str,
        threads: int,
        overrides: list[str],
        resumed: bool = False,
        backend: str = "nodecli",
        backend_distribution: str | None = None,
        device_step_s: dict[str, float] | None = None,
    ) -> None:
        """Mark the run as running; on resume keep the rows and start time already there.

        BACKEND (the library that solves the ODE block) is named, and the version of its
        BACKEND_DISTRIBUTION recorded.
        `devices` lists each device the run trained on and its first epoch, so a run
        resumed on another device says so; DEVICE_STEP_S is device=auto's measurement.
        """
        claim_folder(self.run_dir, "a nodecli run")
        if resumed:
            self.info = read_run_json(self.run_dir)
            self.rows = read_metrics_rows(self.run_dir)
            self.info.setdefault("resumed_at", []).append(now_iso())
        else:
            self.info = {"started_at": now_iso()}
        # Also stored in every checkpoint.pt: resume refuses another run's checkpoint.
        self.info.setdefault("run_id", secrets.token_hex(8))
        devices = self.info.get("devices")
        if not isinstance(devices, list) or not devices:  # new, or recorded before `devices`
            devices = [{"device": self.info.get("device", device), "from_epoch": 1}]
        if devices[-1].get("device") != device:
            devices.append({"device": device, "from_epoch": len(self.rows) + 1})
        self.info["devices"] = devices
        if device_step_s is not None:
            self.info["device_step_s"] = device_step_s
        self.info.update(
            status="running",
            error=None,
            ended_at=None,
            heartbeat_at=now_iso(),
            epochs_completed=len(self.rows),
            versions=versions(backend_distribution),
            backend=backend,
            device=device,
            threads=threads,
            overrides=overrides,
            argv=command_line(),
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        if resumed:  # the same rows first: if either write fails, the record is unchanged
            self._write_metrics()
            self._write_json()
        else:
            self._write_json()
            self._write_metrics()

    def describe_model(self, model: dict[str, Any]) -> None:
        """Record what the run trains (run.json `model`: name, field class, sizes)."""
        self.info["model"] = model
        self._write_json()

    def append_epoch(self, metrics: dict[str, Any]) -> None:
        """Record one finished epoch (the whole CSV is rewritten atomically; it is tiny)."""
        self.rows.append({key: metrics.get(key, "") for key in METRIC_COLUMNS})
        self._write_metrics()
        self.info["epochs_completed"] = len(self.rows)
        self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh the liveness timestamp so a hard-killed run can be told from a live one."""
        self.info["heartbeat_at"] = now_iso()
        self._write_json()

    @contextlib.contextmanager
    def beating(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> Iterator[None]:
        """While inside (work that writes nothing else to the record: one epoch's batches,
        a compile), a daemon thread refreshes heartbeat_at every INTERVAL_S, so a batch that
        takes minutes is not mistaken for a dead run. The thread stops (and a beat under
        way finishes) before the block is left, so it never races the owner's writes."""
        stop = threading.Event()
        lock = threading.Lock()

        def beat() -> None:
            while not stop.wait(interval_s):
                with lock:
                    if stop.is_set():
                        return
                    try:
                        self.heartbeat()
                    except (OSError, ClaimLost):  # the owner's next write says so
                        return

        thread = threading.Thread(target=beat, name="nodecli-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            with lock:  # a beat under way ends before the owner writes again
                pass

    def truncate(self, n_epochs: int) -> None:
        """Keep the first N_EPOCHS rows: those the resume checkpoint covers."""
        self.rows = self.rows[:n_epochs]
        self.info["epochs_completed"] = len(self.rows)
        # run.json first: a kill in between leaves one extra row, which resume redoes.
        self._write_json()
        self._write_metrics()

    def finish(self, status: str, error: str | None = None, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.info.update(status=status, error=error, ended_at=now_iso(), **extra)
        self._write_metrics()
        self.heartbeat()

    def _write_json(self) -> None:
        ensure_owned(self.run_dir)
        atomic_write_text(self.run_path, json.dumps(self.info, indent=2, default=str) + "\n")

    def _write_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=metric_fieldnames(self.rows), restval="", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(self.rows)
        ensure_owned(self.run_dir)
        atomic_write_text(self.metrics_path, buffer.getvalue())


def metric_fieldnames(rows: Iterable[dict[str, Any]]) -> list[str]:
    """METRIC_COLUMNS, then any other column the rows carry (a resumed record written by
    another nodecli version, or annotated by hand): rewriting the CSV keeps them."""
    names = list(METRIC_COLUMNS)
    for row in rows:
        names += [key for key in row if isinstance(key, str) and key not in names]
    return names


# --- reading records (the only place that parses record files) -----------------------
