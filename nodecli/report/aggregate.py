"""The report's Python API: load run records, group them, aggregate over seeds.

    from nodecli.report.aggregate import load_runs, summarize
    df = load_runs(["outputs/sweeps"])        # one row per run and epoch
    summary = summarize(df)                   # one row per group, mean/std over seeds

Aggregation is honest about what it averages: only completed runs with at least one
finished epoch enter a mean (the others are listed in `incomplete`), and a group whose
runs differ in a config key the grouping hides is flagged with that key and its values.
Imports nodecli.report.load (reading) and nodecli.report.grouping (keys, labels); renders nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError
from nodecli.record.layout import METRIC_COLUMNS
from nodecli.report.grouping import (
    NOT_GROUPING,
    filter_runs,
    format_value,
    group_labels,
    grouping_keys,
    is_missing,
    keys_header,
    parse_pairs,
    resolve_key,
    short_name,
    value_label,
)
from nodecli.report.load import load_runs

__all__ = ["Summary", "epoch_table", "filter_runs", "load_runs", "summarize"]

DEFAULT_BASELINE = "sensealg=direct"
NO_EPOCH = "no finished epoch in metrics.csv"

# In the order a study compares them: the epoch time first (the speed-up, computed from
# it, follows it in every table), the other times, then accuracy, then the work (NFE);
# memory columns come last.
METRICS = (
    # key, header, format
    ("epoch_time_s", "epoch time (s)", "sig"),
    ("first_epoch_s", "first epoch (s)", "sig"),
    ("total_train_s", "train time (s)", "sig"),
    ("final_test_acc", "final test acc (%)", ".2f"),
    ("best_test_acc", "best test acc (%)", ".2f"),
    ("final_train_acc", "final train acc (%)", ".2f"),
    ("nfe_forward", "NFE fwd/epoch", ".0f"),
    ("nfe_backward", "NFE bwd/epoch", ".0f"),
)
# Per-epoch view: metrics.csv columns averaged over the runs of a group, epoch by epoch
# (all but the epoch number, the memory probe's and the one-off compile time).
NOT_PER_EPOCH = ("epoch", "hold_memory_bytes", "peak_memory_bytes", "compile_time_s")
EPOCH_METRICS = tuple(c for c in METRIC_COLUMNS if c not in NOT_PER_EPOCH)


@dataclass
class Summary:
    """The comparison: one row per group (numbers), plus the runs kept out of it.

    `groups` has per group: `group` (its label), one column per grouping key (short name,
    the value as in the label), `runs` (n averaged), `incomplete` (runs kept out),
    `epochs` and `epochs_min` (most and fewest finished epochs of the averaged runs, ints),
    `mixed` (hidden keys that differ inside the group, "" if none), `seeds` (the seeds of
    its runs, sorted), `epoch_time_s_mean/_std`, `speedup` and `speedup_note` ("" or how
    the baseline was chosen), then the other `<metric>_mean/_std`. `key_values` holds each
    group's key values as the records hold them (numbers as numbers), by label."""

    groups: pd.DataFrame
    by: list[str]
    baseline: dict[str, str] | None
    incomplete: pd.DataFrame
    memory_columns: list[str] = field(default_factory=list)
    n_runs: int = 0
    determined: dict[str, str] = field(default_factory=dict)
    run_groups: dict[str, str] = field(default_factory=dict)  # counted run_dir -> label
    key_values: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def header(self) -> str:
        """The grouping keys once (`solver · sensealg`), the heading of the label column."""
        return keys_header(self.by)

    @property
    def mixed(self) -> dict[str, str]:
        """Label -> what differs inside that group, for the groups that mix runs."""
        flagged = self.groups[self.groups["mixed"] != ""] if len(self.groups) else self.groups
        return dict(zip(flagged["group"], flagged["mixed"], strict=True)) if len(flagged) else {}


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


def _hidden_differences(members: pd.DataFrame, keys: Sequence[str], config: Sequence[str]) -> str:
    """What differs between the counted runs of one group besides the grouping keys and the
    seed: `train.epochs (2, 5, 9)`; also finished-epoch counts that differ."""
    parts = []
    for column in config:
        if column in keys or column in NOT_GROUPING or column not in members:
            continue
        values = members[column].map(value_label)
        if values.nunique() > 1:
            parts.append(f"{short_name(column)} ({', '.join(_sorted_values(values.unique()))})")
    counts = members["epochs"].astype(int)
    if counts.nunique() > 1 and not any(p.startswith("train.epochs ") for p in parts):
        parts.append(f"finished epochs ({', '.join(map(str, sorted(counts.unique())))})")
    return "; ".join(parts)


def value_order(text: str) -> tuple[int, float, str]:
    """Sort key of a displayed value: numbers by value (2 before 10), then text."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _sorted_values(values: Sequence[str]) -> list[str]:
    return sorted(values, key=value_order)


def same_value(a: str, b: str) -> bool:
    """Whether two displayed values are equal: as text, or as numbers (200 == 200.0)."""
    if a == b:
        return True
    (kind_a, number_a, _), (kind_b, number_b, _) = value_order(a), value_order(b)
    return kind_a == kind_b == 0 and number_a == number_b


def summarize(
    df: pd.DataFrame, by: Sequence[str] | None = None, baseline: str | None = DEFAULT_BASELINE
) -> Summary:
    """Group runs by BY (default: `grouping.grouping_keys`, the keys that vary and are not
    decided by another), aggregate completed runs with a finished epoch as mean and std,
    and compute the speed-up against BASELINE ("key=value[,key=value]"; the default
    applies only when such a group exists)."""
    config_columns = df.attrs.get("config_columns", [])
    determined: dict[str, str] = {}
    if by:
        # dict.fromkeys: `--by sensealg,sensealg.name` names one key once, not twice.
        keys = list(dict.fromkeys(resolve_key(k, config_columns, "--by") for k in by))
    else:
        grouping = grouping_keys(df)
        keys, determined = grouping.keys, grouping.determined
    runs = df.drop_duplicates("run_dir").copy()
    runs["group"] = group_labels([{k: r[k] for k in keys} for _, r in runs.iterrows()])
    stats = per_run(df) if len(runs) else pd.DataFrame({"run_dir": [], "epochs": []})
    runs = runs.drop(columns=[c for c in stats.columns if c in runs and c != "run_dir"])
    runs = runs.merge(stats, on="run_dir", how="left")
    counted_mask = (runs["status"] == "completed") & (runs["epochs"] > 0)
    counted = runs[counted_mask]
    memory = [c for c in stats.columns if c.endswith("_memory_bytes") and counted[c].notna().any()]
    rows = []
    key_values: dict[str, dict[str, Any]] = {}
    for label, members in runs.groupby("group", sort=True):
        row: dict[str, Any] = {"group": label}
        key_values[label] = {}
        for key in keys:
            value = members[key].iloc[0]
            row[short_name(key)] = value_label(value)  # as in the label
            key_values[label][short_name(key)] = None if is_missing(value) else value
        mine = counted[counted["group"] == label]
        row["runs"] = len(mine)
        row["incomplete"] = len(members) - len(mine)
        low, high = (int(mine["epochs"].min()), int(mine["epochs"].max())) if len(mine) else (0, 0)
        row["epochs"], row["epochs_min"] = high, low
        row["mixed"] = _hidden_differences(mine, keys, config_columns) if len(mine) > 1 else ""
        seeds = {format_value(s): s for s in members.get("seed", pd.Series(dtype=object))}
        row["seeds"] = [seeds[text] for text in _sorted_values(seeds)]
        for metric, _, _ in METRICS:
            _mean_std(row, metric, mine)
        for column in memory:
            _mean_std(row, column, mine)
        rows.append(row)
    groups = pd.DataFrame(rows)
    if len(groups):  # by each key's values, numbers as numbers (seed 2 before seed 10)
        names = [short_name(k) for k in keys]
        order = sorted(
            range(len(groups)), key=lambda i: [value_order(groups.iloc[i][n]) for n in names]
        )
        groups = groups.iloc[order].reset_index(drop=True)
    chosen = _apply_baseline(groups, keys, baseline, counted)
    if chosen:  # the baseline group(s) first, the rest in the order above
        first = groups[list(chosen)].eq(pd.Series(chosen)).all(axis=1)
        groups = pd.concat([groups[first], groups[~first]], ignore_index=True)
    if len(groups):  # the speed-up next to the epoch time it is computed from
        moved = ["speedup", "speedup_note"]
        columns = [c for c in groups.columns if c not in moved]
        at = columns.index("epoch_time_s_std") + 1
        groups = groups[columns[:at] + moved + columns[at:]]
    left_out = runs[~counted_mask]
    incomplete = left_out.assign(
        error=[
            NO_EPOCH if status == "completed" else error
            for status, error in zip(left_out["status"], left_out["error"], strict=True)
        ],
        epochs=left_out["epochs"].fillna(0).astype(int),
    )[["group", "status", "epochs", "heartbeat_age_s", "error", "run_dir"]]
    return Summary(
        groups,
        keys,
        chosen,
        incomplete.reset_index(drop=True),
        memory,
        len(runs),
        determined,
        dict(zip(counted["run_dir"], counted["group"], strict=True)),
        key_values,
    )


def _mean_std(row: dict[str, Any], metric: str, runs: pd.DataFrame) -> None:
    values = runs[metric].dropna() if metric in runs else pd.Series(dtype=float)
    row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
    row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _apply_baseline(
    groups: pd.DataFrame, keys: list[str], baseline: str | None, counted: pd.DataFrame
) -> dict[str, str] | None:
    """Speed-up of every group with an epoch time: against the baseline group that shares
    its other keys, or, when there is none, against all baseline runs pooled (noted)."""
    groups["speedup"] = math.nan
    groups["speedup_note"] = ""
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
        matching = [v for v in dict.fromkeys(groups[name]) if same_value(v, value)]
        if not matching:
            if not explicit:
                return None
            raise ConfigError(
                f"--baseline {key}={value} matches no group; {name} values: "
                + ", ".join(_sorted_values(set(groups[name])))
            )
        wanted[name] = matching[0]
    is_base = groups[list(wanted)].eq(pd.Series(wanted)).all(axis=1)
    base_labels = set(groups.loc[is_base, "group"])
    pooled_runs = counted[counted["group"].isin(base_labels)]["epoch_time_s"].dropna()
    pooled = float(pooled_runs.mean()) if len(pooled_runs) else math.nan
    base_text = ",".join(f"{k}={v}" for k, v in wanted.items())
    if not math.isfinite(pooled):  # every speed-up would be "–" with no word why
        if not explicit:
            return None
        raise ConfigError(
            f"--baseline {base_text}: no completed run of that group has a finished epoch, "
            "so there is no epoch time to compare with; choose another or --baseline none"
        )
    for i, row in groups.iterrows():
        mine = row["epoch_time_s_mean"]
        if not (isinstance(mine, float) and mine > 0):
            continue
        match = groups
        for name in shorts:
            match = match[match[name] == wanted.get(name, row[name])]
        base = match["epoch_time_s_mean"].iloc[0] if len(match) == 1 else math.nan
        if not math.isfinite(base) and math.isfinite(pooled):
            base = pooled
            groups.loc[i, "speedup_note"] = f"vs all {base_text} runs"
        groups.loc[i, "speedup"] = base / mine
    return wanted


def epoch_table(df: pd.DataFrame, summary: Summary) -> pd.DataFrame:
    """Per group and epoch: runs averaged (`runs`) and mean/std of every EPOCH_METRICS
    column over the counted runs, for putting next to the reference's per-epoch lines."""
    done = df[df["run_dir"].isin(summary.run_groups)].dropna(subset=["epoch"]).copy()
    done["group"] = done["run_dir"].map(summary.run_groups)
    columns = [c for c in EPOCH_METRICS if c in done]
    for column in columns:
        done[column] = pd.to_numeric(done[column], errors="coerce")
    order = {label: i for i, label in enumerate(summary.groups["group"])}
    rows = []
    for (label, epoch), g in done.groupby(["group", "epoch"], sort=False):
        row: dict[str, Any] = {"group": label, "epoch": int(epoch), "runs": len(g)}
        for column in columns:
            _mean_std(row, column, g)
        rows.append(row)
    table = pd.DataFrame(
        rows,
        columns=["group", "epoch", "runs"] + [f"{c}_{s}" for c in columns for s in ("mean", "std")],
    )
    table["_order"] = table["group"].map(order)
    return table.sort_values(["_order", "epoch"]).drop(columns="_order").reset_index(drop=True)
