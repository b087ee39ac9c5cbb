"""The run record: the contract between `nodecli train` and `nodecli report`.

A run directory holds `.hydra/` (written by Hydra), `metrics.csv` (one row per finished
epoch), `run.json` (status, times, versions, device) and `checkpoint.pt` (for resume).
Every write goes to a temporary file in the same directory and is renamed into place,
so a killed process never leaves a half-written file behind, and only after checking
that this process still owns the folder (nodecli.ownership).

This module is also the only reader of record files: `read_run_json`, `read_metrics`,
`read_config`, and the one liveness rule `run_state`, used by resume, sweep and report.
(`process_alive` lives in nodecli.ownership, which claims folders with it; re-exported.)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodecli.atomic import atomic_write_text
from nodecli.errors import ConfigError
from nodecli.ownership import CLAIM_FILE, claim_folder, ensure_owned, process_alive
from nodecli.provenance import command_line, versions

if TYPE_CHECKING:
    import pandas as pd


METRICS_FILE = "metrics.csv"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = ".hydra/config.yaml"  # written by Hydra
# Sweep resume moves a job's earlier record into <job dir>/attempts/<n>/.
ATTEMPTS_DIR = "attempts"
SWEEP_FILE = "sweep.json"  # a sweep folder's plan (nodecli.sweep_plan)
MULTIRUN_FILE = "multirun.yaml"  # written by Hydra at the start of every multirun

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
# A "running" record whose heartbeat is older than this counts as dead ("stale").
STALE_AFTER_S = 600.0
REQUIRED_METRICS = ("epoch", "train_time_s", "train_acc", "test_acc")
NUMERIC_METRICS = ("train_loss", "nfe_forward", "nfe_backward")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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

    def start(
        self,
        device: str,
        threads: int,
        overrides: list[str],
        resumed: bool = False,
        backend: str = "nodecli",
        device_step_s: dict[str, float] | None = None,
    ) -> None:
        """Mark the run as running; on resume keep the rows and start time already there.

        BACKEND (the library that solves the ODE block) is named with its version.
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
            versions=versions(backend),
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


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR's run.json as a dict; ValueError (one line) when it is not a run record."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ValueError(f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or "status" not in data:
        raise ValueError("not a run record (no status)")
    wrong = _misshapen_field(data)
    if wrong:
        raise ValueError(wrong)
    return data


def _misshapen_field(info: dict[str, Any]) -> str | None:
    """The first run.json field whose type no writer produces (an edited or damaged
    record: resume used to fail half-way on it, after rewriting .hydra/)."""

    def str_list(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    if not isinstance(info["status"], str):
        return f"status is {info['status']!r}, not a word"
    for key in ("overrides", "resumed_at"):
        if key in info and not str_list(info[key]):
            return f"{key} is not a list of strings"
    devices = info.get("devices")
    if devices is not None and not (
        isinstance(devices, list)
        and all(
            isinstance(d, dict)
            and isinstance(d.get("device"), str)
            and type(d.get("from_epoch")) is int
            for d in devices
        )
    ):
        return "devices is not a list of {device, from_epoch}"
    return None


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.csv (PATH, or a run folder) as a DataFrame; ValueError when it is missing,
    truncated or malformed."""
    import pandas as pd  # here: a training run never needs pandas, and it costs ~0.4 s

    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if path.is_dir():
        raise ValueError("a folder, not a file")
    if not path.is_file():
        raise ValueError("missing")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError("empty file (no header)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"malformed CSV ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in REQUIRED_METRICS if c not in frame.columns]
    if missing:
        raise ValueError(f"truncated or malformed: no column {missing[0]!r}")
    numeric = [c for c in frame.columns if c in REQUIRED_METRICS + NUMERIC_METRICS]
    numeric += [c for c in frame.columns if c.endswith("_memory_bytes")]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    bad = frame[list(REQUIRED_METRICS)].isna().any(axis=1)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0]) + 2  # 1-based, after the header
        raise ValueError(f"truncated or malformed row (line {row})")
    # Values no run can write: an infinite or negative time, an accuracy outside 0–100
    # (a time of inf crashed --plot, -1 gave a speed-up of -66×).
    for column in numeric:
        low, high = (0.0, 100.0) if column.endswith("_acc") else (0.0, math.inf)
        values = frame[column]
        wrong = values.notna() & ~values.between(low, high)
        wrong |= values.isin([math.inf, -math.inf])
        if wrong.any():
            row = int(wrong.to_numpy().nonzero()[0][0])
            value = values.iloc[row]
            raise ValueError(f"{column}={value} on line {row + 2} is out of range")
    # The writer appends epochs 1, 2, … in order (a resume goes on from the last): a
    # duplicated, skipped or fractional epoch is an edited or damaged file, and counting
    # it would add a phantom run to every per-epoch mean.
    expected = range(1, len(frame) + 1)
    for row, (epoch, want) in enumerate(zip(frame["epoch"], expected, strict=True)):
        if epoch != want:
            raise ValueError(
                f"epoch {epoch:g} on line {row + 2} where epoch {want} belongs: epochs must "
                "run 1, 2, … in order (a duplicated or edited row)"
            )
    frame["epoch"] = frame["epoch"].astype(int)
    return frame


def read_recorded_metrics(run_dir: Path, info: dict[str, Any]) -> pd.DataFrame:
    """RUN_DIR's metrics.csv checked against its run.json INFO as well: ValueError when it
    holds fewer rows than run.json's finished epochs (metrics.csv is written before
    run.json, so it never has fewer: truncated)."""
    metrics = read_metrics(Path(run_dir) / METRICS_FILE)
    recorded = info.get("epochs_completed")
    if isinstance(recorded, int) and recorded > len(metrics):
        raise ValueError(
            f"{len(metrics)} row(s) but run.json records {recorded} finished epoch(s): truncated"
        )
    return metrics


def read_metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows as the writer keeps them (text cells); [] when there is none.
    Parsed and checked by `read_metrics`, so a damaged file is a ValueError here too."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    read_metrics(path)
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run (.hydra/config.yaml), flattened to dotted keys."""
    return flatten(read_config_tree(run_dir))


def read_config_tree(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run (.hydra/config.yaml) as nested dicts; ValueError (one
    line) when it is missing, not YAML or not a mapping."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError("missing")
    try:
        container = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # noqa: BLE001 - YAML/OmegaConf errors: a corrupt file
        raise ValueError(f"invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(container, dict):
        raise ValueError("not a mapping")
    if not container:
        raise ValueError("empty")
    return container


def hydra_mode(run_dir: Path) -> str | None:
    """`RUN` or `MULTIRUN` (a sweep job), as Hydra recorded in .hydra/hydra.yaml; None
    when that file is missing or unreadable."""
    from omegaconf import OmegaConf

    try:
        mode = OmegaConf.load(Path(run_dir) / ".hydra" / "hydra.yaml").hydra.mode
    except Exception:  # noqa: BLE001 - missing or damaged: unknown
        return None
    return str(mode) if mode is not None else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (`sensealg.name`): report columns, tracker params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def run_state(info: dict[str, Any], stale_after_s: float = STALE_AFTER_S) -> tuple[str, float]:
    """(status, heartbeat age in seconds): the one liveness rule. A 'running' record is
    'stale' when its pid is gone on this host or its heartbeat is older than
    STALE_AFTER_S (the only evidence for a run on another host)."""
    status = str(info.get("status"))
    beat = _parse_time(info.get("heartbeat_at")) or _parse_time(info.get("started_at"))
    age = (datetime.now(timezone.utc) - beat).total_seconds() if beat else math.nan
    if status == "running":
        pid, host = info.get("pid"), info.get("host")
        dead = (
            host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid, host)
        )
        if dead or not age <= stale_after_s:
            return "stale", age
    return status, age


def is_old_attempt(run_dir: Path) -> bool:
    """<job>/attempts/<n>/: an earlier attempt that sweep resume moved aside."""
    return run_dir.parent.name == ATTEMPTS_DIR and run_dir.name.isdigit()


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory under PATHS (a run dir holds run.json or metrics.csv).
    Old attempts kept by `nodecli sweep` resume (<job>/attempts/<n>/) are left out."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    # Keyed by the resolved folder: `report sw /abs/sw` or a symlink to sw read each
    # run twice (n doubled, the std shrunk); the path shown is the first one given.
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{raw}: no such file or directory")
        if path.is_file():
            if path.name not in (RUN_FILE, METRICS_FILE):
                raise ConfigError(
                    f"{raw} is a file, not a run or sweep folder (or a run's {RUN_FILE} / "
                    f"{METRICS_FILE}); give the folder that holds the records"
                )
            path = path.parent
        for name in (RUN_FILE, METRICS_FILE):
            for file in [path / name, *path.rglob(name)]:
                if file.is_file() and not is_old_attempt(file.parent):
                    found.setdefault(file.parent.resolve(), file.parent)
    return sorted(found.values())


def folder_entries(folder: Path) -> list[str]:
    """What FOLDER holds besides nodecli's lock file: a new run or sweep starts only in
    an empty folder, so it never buries a user's files or half a record."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != CLAIM_FILE)
