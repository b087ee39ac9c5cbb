"""Reading run records for the report: run.json, metrics.csv and .hydra/config.yaml of
every run under some folders, into one pandas DataFrame.

Kept apart from grouping and rendering so the readers can move to nodecli.runs (the record
contract) without touching the rest of the report. Imports only nodecli.runs and errors.
"""

from __future__ import annotations

import json
import math
import socket
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError
from nodecli.runs import ATTEMPTS_DIR, CONFIG_FILE, METRICS_FILE, RUN_FILE, process_alive

STALE_AFTER_S = 600.0
REQUIRED_METRICS = ("epoch", "train_time_s", "train_acc", "test_acc")
NUMERIC_METRICS = ("train_loss", "nfe_forward", "nfe_backward")
RUN_COLUMNS = (
    "run_dir",
    "status",
    "recorded_status",
    "error",
    "started_at",
    "ended_at",
    "heartbeat_at",
    "heartbeat_age_s",
    "device",
    "threads",
    "host",
    "pid",
    "overrides",
)


def warn(message: str) -> None:
    print(f"nodecli: warning: {message}", file=sys.stderr)


# --- reading one run ------------------------------------------------------------------


def read_run_info(path: Path) -> dict[str, Any]:
    """run.json as a dict; ValueError (one line) when it is not a valid run record."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ValueError(f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or "status" not in data:
        raise ValueError("not a run record (no status)")
    return data


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.csv as a DataFrame; ValueError when it is missing, truncated or malformed."""
    path = Path(path)
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
    frame["epoch"] = frame["epoch"].astype(int)
    return frame


def read_config(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run, flattened to dotted keys."""
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
    return flatten(container)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
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
    """(status, heartbeat age in seconds). A 'running' record is 'stale' when its
    heartbeat is older than STALE_AFTER_S or its pid is gone on this host."""
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


# --- finding and loading runs ------------------------------------------------------------


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory under PATHS (a run dir holds run.json or metrics.csv).
    Old attempts kept by `nodecli sweep` resume (<job>/attempts/<n>/) are left out."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{raw}: no such file or directory")
        if path.is_file():
            path = path.parent
        for name in (RUN_FILE, METRICS_FILE):
            for file in [path / name, *path.rglob(name)]:
                if file.is_file() and not _is_old_attempt(file.parent):
                    found.add(file.parent)
    return sorted(found)


def _is_old_attempt(run_dir: Path) -> bool:
    return run_dir.parent.name == ATTEMPTS_DIR and run_dir.name.isdigit()


def load_runs(
    paths: Iterable[str | Path] = ("outputs",),
    stale_after_s: float = STALE_AFTER_S,
    on_warning: Callable[[str], None] = warn,
) -> pd.DataFrame:
    """One row per run and epoch: run columns (RUN_COLUMNS), the config flattened to
    dotted keys (`sensealg.name`, `train.epochs`, …) and the metrics.csv columns. A run
    with no finished epoch has one row with an empty `epoch`. Unreadable runs are
    skipped with a warning naming the file. `df.attrs['config_columns']` lists the
    config keys."""
    frames: list[pd.DataFrame] = []
    config_columns: dict[str, None] = {}
    for run_dir in find_run_dirs(paths):
        try:
            what = run_dir / RUN_FILE
            if not what.is_file():
                raise ValueError("missing")
            info = read_run_info(what)
            what = run_dir / METRICS_FILE
            metrics = read_metrics(what)
            what = run_dir / CONFIG_FILE
            config = read_config(run_dir)
        except ValueError as exc:
            on_warning(f"skipping {what}: {exc}")
            continue
        status, age = run_state(info, stale_after_s)
        run = {
            "run_dir": str(run_dir),
            "status": status,
            "recorded_status": info.get("status"),
            "error": info.get("error"),
            "started_at": info.get("started_at"),
            "ended_at": info.get("ended_at"),
            "heartbeat_at": info.get("heartbeat_at"),
            "heartbeat_age_s": age,
            "device": info.get("device"),
            "threads": info.get("threads"),
            "host": info.get("host"),
            "pid": info.get("pid"),
            "overrides": info.get("overrides") or [],
        }
        for key in config:
            config_columns.setdefault(key, None)
        if metrics.empty:
            metrics = pd.DataFrame({"epoch": [pd.NA]})
        for key, value in {**run, **config}.items():
            # A list (the overrides) must stay one cell, not become a column of its own.
            cells = pd.Series([value] * len(metrics), index=metrics.index, dtype=object)
            metrics.insert(
                len(metrics.columns), key, cells if isinstance(value, list) else cells.tolist()
            )
        frames.append(metrics)
    if not frames:
        df = pd.DataFrame(columns=[*RUN_COLUMNS, "epoch"])
    else:
        df = pd.concat(frames, ignore_index=True)
        ordered = [*RUN_COLUMNS, *config_columns]
        df = df[ordered + [c for c in df.columns if c not in ordered]]
    df.attrs["config_columns"] = list(config_columns)
    return df
