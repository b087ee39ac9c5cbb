"""Run records into one pandas DataFrame for the report: every run under some folders,
its run.json, metrics.csv and .hydra/config.yaml side by side.

The files themselves are read by nodecli.record.run (the one reader of the record contract);
this module only finds, joins and tabulates them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from nodecli.record.layout import (
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILE,
    STALE_AFTER_S,
    SWEEP_FILE,
    find_run_dirs,
)
from nodecli.record.read import read_config, read_recorded_metrics, read_run_json, run_state

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
            info = read_run_json(run_dir)
            what = run_dir / METRICS_FILE
            metrics = read_recorded_metrics(run_dir, info)
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
        # A column added to metrics.csv by hand may share a record key's name (status,
        # seed): keep it, renamed, rather than fail to insert the record's own.
        metrics = metrics.rename(
            columns={c: f"{c} (metrics.csv)" for c in metrics.columns if c in {**run, **config}}
        )
        for key, value in {**run, **config}.items():
            # A list (the overrides) must stay one cell, not become a column of its own.
            # Config values stay the Python objects the record holds: a column pandas
            # typed per run would be float64 once one run's int exceeds int64
            # (train.batch_size=2**63 printed every batch size as `128.0`).
            cells = pd.Series([value] * len(metrics), index=metrics.index, dtype=object)
            keep = isinstance(value, list) or key in config
            metrics.insert(len(metrics.columns), key, cells if keep else cells.tolist())
        frames.append(metrics)
    if not frames:
        df = pd.DataFrame(columns=[*RUN_COLUMNS, "epoch"])
    else:
        df = pd.concat(frames, ignore_index=True)
        ordered = [*RUN_COLUMNS, *config_columns]
        df = df[ordered + [c for c in df.columns if c not in ordered]]
    df.attrs["config_columns"] = list(config_columns)
    return df


def unstarted_jobs(paths: Iterable[str | Path], run_dirs: Iterable[Path]) -> list[str]:
    """One line per sweep folder under PATHS whose sweep.json plans more jobs than have
    a run record among RUN_DIRS: the report shows only what has run, and would otherwise
    read as the whole sweep."""
    sweeps: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            continue
        for plan in [path / SWEEP_FILE, *path.rglob(SWEEP_FILE)]:
            if plan.is_file():
                sweeps.setdefault(plan.parent.resolve(), plan.parent)
    found = [Path(d).resolve() for d in run_dirs]
    lines = []
    for resolved, shown in sorted(sweeps.items()):
        try:
            planned = json.loads((resolved / SWEEP_FILE).read_text(encoding="utf-8"))["n_jobs"]
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a damaged plan says nothing about the jobs; the runs speak for it
        if not isinstance(planned, int) or isinstance(planned, bool):
            continue
        have = sum(1 for d in found if d.is_relative_to(resolved))
        if have < planned:
            lines.append(
                f"{shown}: {have} of the {planned} jobs its {SWEEP_FILE} plans have a run "
                "record; the others have not started (or their folders are gone)"
            )
    return lines
