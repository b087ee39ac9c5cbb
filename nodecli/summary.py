"""The report's Python API: load run records, group them, aggregate over seeds.

    from nodecli.summary import load_runs, summarize
    df = load_runs(["outputs/sweeps"])        # one row per run and epoch
    summary = summarize(df)                   # one row per group, mean/std over seeds

Imports nodecli.records (reading) and nodecli.grouping (keys, labels); renders nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError
from nodecli.grouping import (
    filter_runs,
    format_value,
    group_label,
    parse_pairs,
    resolve_key,
    short_name,
    varying_keys,
)
from nodecli.records import load_runs

__all__ = ["Summary", "filter_runs", "load_runs", "summarize"]

DEFAULT_BASELINE = "sensealg=direct"


@dataclass
class Summary:
    """The comparison: one row per group (numbers), plus the runs kept out of it."""

    groups: pd.DataFrame
    by: list[str]
    baseline: dict[str, str] | None
    incomplete: pd.DataFrame
    memory_columns: list[str] = field(default_factory=list)
    n_runs: int = 0


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the per-run quantities the report averages over seeds."""
    memory = [c for c in df.columns if c.endswith("_memory_bytes")]
    rows = []
    for run_dir, g in df.groupby("run_dir", sort=False):
        g = g.dropna(subset=["epoch"]).sort_values("epoch")
        if g.empty:  # no finished epoch: every figure is missing (NaN in the frame)
            rows.append({"run_dir": run_dir, "epochs": 0})
            continue
        times = g["train_time_s"].to_numpy(dtype=float)
        row = {
            "run_dir": run_dir,
            "epochs": len(g),
            "first_epoch_s": times[0],
            # Epoch 1 pays for warm-up (allocations, compilation): kept apart.
            "epoch_time_s": float(pd.Series(times[1:]).median()) if len(times) > 1 else times[0],
            "total_train_s": float(sum(times)),
            "final_test_acc": g["test_acc"].iloc[-1],
            "best_test_acc": g["test_acc"].max(),
            "final_train_acc": g["train_acc"].iloc[-1],
        }
        for column in ("nfe_forward", "nfe_backward"):
            row[column] = g[column].mean() if column in g else math.nan
        for column in memory:
            row[column] = g[column].max()
        rows.append(row)
    return pd.DataFrame(rows)


METRICS = (
    # key, header, format
    ("first_epoch_s", "first epoch (s)", "sig"),
    ("epoch_time_s", "epoch time (s)", "sig"),
    ("total_train_s", "train time (s)", "sig"),
    ("final_test_acc", "final test acc (%)", ".2f"),
    ("best_test_acc", "best test acc (%)", ".2f"),
    ("final_train_acc", "final train acc (%)", ".2f"),
    ("nfe_forward", "NFE fwd/epoch", ".0f"),
    ("nfe_backward", "NFE bwd/epoch", ".0f"),
)


def summarize(
    df: pd.DataFrame, by: Sequence[str] | None = None, baseline: str | None = DEFAULT_BASELINE
) -> Summary:
    """Group runs by BY (default: the config keys that vary, seed excluded), aggregate
    completed runs as mean and std, and compute the speed-up against BASELINE
    ("key=value[,key=value]"; the default applies only when such a group exists)."""
    config_columns = df.attrs.get("config_columns", [])
    keys = [resolve_key(k, config_columns, "--by") for k in by] if by else varying_keys(df)
    runs = df.drop_duplicates("run_dir").copy()
    runs["group"] = [group_label({k: r[k] for k in keys}) for _, r in runs.iterrows()]
    done = runs[runs["status"] == "completed"]
    stats = per_run(df[df["run_dir"].isin(done["run_dir"])]) if len(done) else pd.DataFrame()
    memory = [c for c in stats.columns if c.endswith("_memory_bytes") and stats[c].notna().any()]
    if len(stats):
        stats = stats.merge(done[["run_dir", "group"]], on="run_dir")
    rows = []
    for label, members in runs.groupby("group", sort=True):
        row: dict[str, Any] = {"group": label}
        for key in keys:
            row[short_name(key)] = format_value(members[key].iloc[0])
        mine = stats[stats["group"] == label] if len(stats) else pd.DataFrame()
        row["runs"] = len(mine)
        row["incomplete"] = int((members["status"] != "completed").sum())
        row["epochs"] = int(mine["epochs"].max()) if len(mine) else 0
        row["seeds"] = ",".join(
            sorted({format_value(s) for s in members.get("seed", pd.Series(dtype=object))})
        )
        for metric, _, _ in METRICS:
            _mean_std(row, metric, mine)
        for column in memory:
            _mean_std(row, column, mine)
        rows.append(row)
    groups = pd.DataFrame(rows)
    chosen = _apply_baseline(groups, keys, baseline)
    if chosen:  # the baseline group(s) first, the rest in name order
        first = groups[list(chosen)].eq(pd.Series(chosen)).all(axis=1)
        groups = pd.concat([groups[first], groups[~first]], ignore_index=True)
    incomplete = runs[runs["status"] != "completed"]
    epochs_done = df.dropna(subset=["epoch"]).groupby("run_dir")["epoch"].count()
    incomplete = incomplete.assign(
        epochs=incomplete["run_dir"].map(epochs_done).fillna(0).astype(int)
    )[["group", "status", "epochs", "heartbeat_age_s", "error", "run_dir"]]
    return Summary(groups, keys, chosen, incomplete.reset_index(drop=True), memory, len(runs))


def _mean_std(row: dict[str, Any], metric: str, runs: pd.DataFrame) -> None:
    values = runs[metric].dropna() if metric in runs else pd.Series(dtype=float)
    row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
    row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _apply_baseline(
    groups: pd.DataFrame, keys: list[str], baseline: str | None
) -> dict[str, str] | None:
    groups["speedup"] = math.nan
    if not baseline or baseline == "none" or groups.empty:
        return None
    explicit = baseline != DEFAULT_BASELINE
    pairs = parse_pairs(baseline, "--baseline")
    shorts = {short_name(k): k for k in keys}
    wanted: dict[str, str] = {}
    for key, value in pairs:
        name = short_name(key)
        if name not in shorts:
            if not explicit:
                return None
            grouped = ", ".join(shorts) or "nothing (all runs form one group)"
            raise ConfigError(f"--baseline key '{key}' is not a grouping key; grouped by {grouped}")
        if value not in set(groups[name]):
            if not explicit:
                return None
            raise ConfigError(
                f"--baseline {key}={value} matches no group; {name} values: "
                + ", ".join(sorted(set(groups[name])))
            )
        wanted[name] = value
    for i, row in groups.iterrows():
        match = groups
        for name in shorts:
            target = wanted.get(name, row[name])
            match = match[match[name] == target]
        if len(match) == 1:
            base = match["epoch_time_s_mean"].iloc[0]
            if row["epoch_time_s_mean"] > 0:
                groups.loc[i, "speedup"] = base / row["epoch_time_s_mean"]
    return wanted
