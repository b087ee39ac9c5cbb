"""`nodecli report`: run records → pandas DataFrame → tables (rich, markdown, CSV, JSON,
LaTeX) and a PNG.

It reads only the run record files (`run.json`, `metrics.csv`, `.hydra/config.yaml`);
it never imports the training code. Python API:

    from nodecli.report import load_runs, summarize
    df = load_runs(["outputs/sweeps"])        # one row per run and epoch
    summary = summarize(df)                   # one row per group, mean/std over seeds
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError, raise_usage_errors
from nodecli.runs import ATTEMPTS_DIR, CONFIG_FILE, METRICS_FILE, RUN_FILE, process_alive

STALE_AFTER_S = 600.0
REQUIRED_METRICS = ("epoch", "train_time_s", "train_acc", "test_acc")
NUMERIC_METRICS = ("train_loss", "nfe_forward", "nfe_backward")
# Config keys never used for grouping by default: the seed is what we average over.
NOT_GROUPING = ("seed", "resume")
DEFAULT_BASELINE = "sensealg=direct"
FORMATS = ("rich", "markdown", "csv", "json", "latex")
# Short names: `sensealg` means the column `sensealg.name`, `solver` means `solver.method`.
SHORT_SUFFIXES = (".name", ".method")
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
        }
        for key in config:
            config_columns.setdefault(key, None)
        if metrics.empty:
            metrics = pd.DataFrame({"epoch": [pd.NA]})
        for key, value in {**run, **config}.items():
            metrics.insert(len(metrics.columns), key, [value] * len(metrics))
        frames.append(metrics)
    if not frames:
        df = pd.DataFrame(columns=[*RUN_COLUMNS, "epoch"])
    else:
        df = pd.concat(frames, ignore_index=True)
        ordered = [*RUN_COLUMNS, *config_columns]
        df = df[ordered + [c for c in df.columns if c not in ordered]]
    df.attrs["config_columns"] = list(config_columns)
    return df


# --- grouping and aggregating ------------------------------------------------------------


def short_name(column: str) -> str:
    """`sensealg.name` → `sensealg`, `solver.method` → `solver`; other keys unchanged."""
    for suffix in SHORT_SUFFIXES:
        if column.endswith(suffix) and column.count(".") == 1:
            return column[: -len(suffix)]
    return column


def resolve_key(key: str, columns: Sequence[str], what: str) -> str:
    if key in columns:
        return key
    for column in columns:
        if short_name(column) == key:
            return column
    raise ConfigError(
        f"{what}: unknown key '{key}'; valid keys: "
        + ", ".join(sorted({short_name(c) for c in columns}))
    )


def format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_matches(value: Any, wanted: str) -> bool:
    text = format_value(value)
    if text == wanted:
        return True
    try:
        return float(text) == float(wanted)
    except ValueError:
        return False


def parse_pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects key=value, got '{part}'")
        pairs.append((key, value))
    if not pairs:
        raise ConfigError(f"{what} expects key=value")
    return pairs


def filter_runs(df: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """Keep runs whose config (or status/device) matches every KEY=VALUE; VALUE may be
    a|b to accept several."""
    columns = [*df.attrs.get("config_columns", []), "status", "device"]
    for clause in where:
        key, sep, value = clause.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where expects key=value, got '{clause}'")
        column = resolve_key(key, columns, "--where")
        accepted = value.replace(",", "|").split("|")
        mask = df[column].map(lambda v, a=accepted: any(_value_matches(v, w) for w in a))
        attrs = df.attrs
        df = df[mask]
        df.attrs = attrs
    return df


def varying_keys(df: pd.DataFrame) -> list[str]:
    runs = df.drop_duplicates("run_dir")
    keys = []
    for column in df.attrs.get("config_columns", []):
        if column in NOT_GROUPING or column not in runs:
            continue
        # A run without the key (another sensealg's option) is not a different value.
        present = runs[column][~runs[column].map(lambda v: isinstance(v, float) and math.isnan(v))]
        if present.map(format_value).nunique() > 1:
            keys.append(column)
    return keys


@dataclass
class Summary:
    """The comparison: one row per group (numbers), plus the runs kept out of it."""

    groups: pd.DataFrame
    by: list[str]
    baseline: dict[str, str] | None
    incomplete: pd.DataFrame
    memory_columns: list[str] = field(default_factory=list)
    n_runs: int = 0


def group_label(values: dict[str, Any]) -> str:
    if not values:
        return "all runs"
    return " ".join(f"{short_name(k)}={format_value(v)}" for k, v in values.items())


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


# --- rendering ---------------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _cell(row: pd.Series, metric: str, spec: str, scale: float = 1.0) -> str:
    mean, std = row.get(f"{metric}_mean", math.nan), row.get(f"{metric}_std", math.nan)
    if not math.isfinite(mean):
        return "–"
    mean, std = mean / scale, std / scale
    if spec == "sig":  # 4 significant digits for the mean; the std to the same decimals
        digits = 3 - math.floor(math.log10(abs(mean))) if mean else 0
        spec = f".{min(max(digits, 0), 6)}f"
    text = format(mean, spec)
    return f"{text} ± {format(std, spec)}" if math.isfinite(std) else text


def memory_unit(summary: Summary, column: str) -> tuple[str, int]:
    """KiB for small models (the reference holds ~0.4 MiB), MiB once a column reaches 100 MiB."""
    values = summary.groups.get(f"{column}_mean")
    largest = values.max() if values is not None and len(values) else float("nan")
    return ("MiB", 2**20) if largest >= 100 * 2**20 else ("KiB", 2**10)


def memory_header(column: str, unit: str = "MiB") -> str:
    return column.removesuffix("_bytes").replace("_", " ") + f" ({unit})"


def display_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The group table as text cells: header and rows (shared by rich/markdown/LaTeX)."""
    headers = ["group", "runs", "epochs", *(h for _, h, _ in METRICS)]
    units = {c: memory_unit(summary, c) for c in summary.memory_columns}
    headers += [memory_header(c, units[c][0]) for c in summary.memory_columns]
    with_speedup = summary.baseline is not None
    if with_speedup:
        headers.append("speed-up")
    rows = []
    for _, row in summary.groups.iterrows():
        runs = str(row["runs"])
        if row["incomplete"]:
            runs += f" (+{row['incomplete']})"
        cells = [row["group"], runs, str(row["epochs"])]
        cells += [_cell(row, metric, spec) for metric, _, spec in METRICS]
        cells += [_cell(row, c, ".1f", units[c][1]) for c in summary.memory_columns]
        if with_speedup:
            cells.append(
                _fmt(row["speedup"], ".2f") + ("×" if math.isfinite(row["speedup"]) else "")
            )
        rows.append(cells)
    return headers, rows


def incomplete_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    headers = ["group", "status", "epochs done", "last heartbeat", "error", "run"]
    rows = []
    for _, r in summary.incomplete.iterrows():
        age = r["heartbeat_age_s"]
        rows.append(
            [
                r["group"],
                r["status"],
                str(r["epochs"]),
                f"{_age(age)} ago" if age == age else "–",
                (r["error"] or "") if isinstance(r["error"], str) else "",
                r["run_dir"],
            ]
        )
    return headers, rows


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(summary: Summary) -> str:
    by = ", ".join(short_name(k) for k in summary.by) or "nothing (one group)"
    done = int(summary.groups["runs"].sum()) if len(summary.groups) else 0
    text = f"{summary.n_runs} run(s), {done} completed; grouped by {by}; mean ± std over runs"
    if summary.baseline:
        base = ",".join(f"{k}={v}" for k, v in summary.baseline.items())
        text += f"; speed-up = epoch time of {base} / epoch time of the group"
    return text


NOTES = (
    "runs (+k): k runs not completed, kept out of the means; "
    "epoch time = median over epochs 2..N (epoch 1 when N = 1); "
    "NFE = vector-field evaluations per epoch; memory = peak over epochs"
)


def render_rich(summary: Summary) -> None:
    from rich.table import Table

    from nodecli.console import make_console

    console = make_console()
    headers, rows = display_table(summary)
    caption = describe(summary) + "\n" + NOTES
    needed = sum(max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers))
    if rows and needed > console.width:
        # Too wide for this terminal: one column per group, one row per figure.
        table = Table(title="nodecli report", caption=caption)
        table.add_column("", justify="left", no_wrap=True)
        for cells in rows:
            table.add_column(cells[0], justify="right", no_wrap=True)
        for i, name in enumerate(headers[1:], start=1):
            table.add_row(name, *(cells[i] for cells in rows))
    else:
        table = Table(title="nodecli report", caption=caption)
        for i, name in enumerate(headers):
            table.add_column(
                name, justify="left" if i == 0 else "right", overflow="fold", no_wrap=i < 2
            )
        for cells in rows:
            table.add_row(*cells)
    console.print(table)
    if len(summary.incomplete):
        headers, rows = incomplete_table(summary)
        table = Table(title="runs kept out of the means (not completed)")
        for name in headers:
            table.add_column(name, overflow="fold")
        colours = {"failed": "red", "interrupted": "yellow", "stale": "magenta"}
        for cells in rows:
            colour = colours.get(cells[1], "cyan")
            cells[1] = f"[{colour}]{cells[1]}[/{colour}]"
            table.add_row(*cells)
        console.print(table)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |"]
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |")
    lines += ["| " + " | ".join(_md_escape(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


def render_markdown(summary: Summary) -> str:
    text = markdown_table(*display_table(summary))
    text += f"\n\n{describe(summary)}; {NOTES}.\n"
    if len(summary.incomplete):
        headers, rows = incomplete_table(summary)
        text += "\nRuns kept out of the means (not completed):\n\n"
        text += markdown_table(headers, rows).replace("---:", "---") + "\n"
    return text


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    out = "".join(LATEX_SPECIAL.get(c, c) for c in text)
    return out.replace("±", r"$\pm$").replace("×", r"$\times$").replace("–", "--")


def render_latex(summary: Summary) -> str:
    headers, rows = display_table(summary)
    spec = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{tabular}{" + spec + "}", r"\hline"]
    lines.append(" & ".join(_latex_escape(h) for h in headers) + r" \\")
    lines.append(r"\hline")
    lines += [" & ".join(_latex_escape(c) for c in cells) + r" \\" for cells in rows]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def render_json(summary: Summary) -> str:
    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")
        ]

    data = {
        "group_by": [short_name(k) for k in summary.by],
        "baseline": summary.baseline,
        "groups": records(summary.groups),
        "incomplete": records(summary.incomplete),
    }
    return json.dumps(data, indent=2) + "\n"


def render_csv(summary: Summary) -> str:
    return summary.groups.to_csv(index=False)


# --- plot --------------------------------------------------------------------------------


def plot(df: pd.DataFrame, summary: Summary, path: Path) -> None:
    """Left: test accuracy per epoch per group (mean line, ±std band, labelled at the
    line's end). Right: epoch time per group as bars (mean ± std), labelled on the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = df.drop_duplicates("run_dir")
    labels = {r["run_dir"]: group_label({k: r[k] for k in summary.by}) for _, r in runs.iterrows()}
    done = df[(df["status"] == "completed") & df["epoch"].notna()].copy()
    done["group"] = done["run_dir"].map(labels)
    groups = summary.groups[summary.groups["runs"] > 0].reset_index(drop=True)
    colours = plt.get_cmap("tab10")
    fig, (acc_ax, time_ax) = plt.subplots(
        1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]}
    )
    ends = []
    max_epoch = 1
    for i, label in enumerate(groups["group"]):
        curve = done[done["group"] == label].groupby("epoch")["test_acc"].agg(["mean", "std"])
        epochs = curve.index.to_numpy(dtype=float)
        mean, std = curve["mean"].to_numpy(), curve["std"].fillna(0).to_numpy()
        colour = colours(i % 10)
        acc_ax.plot(epochs, mean, marker="o", color=colour, linewidth=2)
        acc_ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ends.append([mean[-1], epochs[-1], label, colour])
        max_epoch = max(max_epoch, int(epochs[-1]))
    # Direct labels at each line's end, nudged apart so they never overlap.
    low, high = acc_ax.get_ylim()
    gap = (high - low) * 0.06
    ends.sort(key=lambda e: e[0])
    for j in range(1, len(ends)):
        ends[j][0] = max(ends[j][0], ends[j - 1][0] + gap)
    for y, x, label, colour in ends:
        acc_ax.annotate(
            label,
            xy=(x, y),
            xytext=(8, 0),
            textcoords="offset points",
            color=colour,
            va="center",
            fontsize=9,
            fontweight="bold",
        )
    acc_ax.set_xlim(0.8, max_epoch + 0.2 + 0.45 * max(max_epoch - 1, 1))
    acc_ax.set_ylim(low, max(high, ends[-1][0] + gap) if ends else high)
    acc_ax.set_xticks(range(1, max_epoch + 1))
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_title("Test accuracy per epoch (line: mean over runs, band: ± std)")
    acc_ax.grid(alpha=0.3)

    means = groups["epoch_time_s_mean"].to_numpy()
    stds = groups["epoch_time_s_std"].fillna(0).to_numpy()
    positions = range(len(groups))
    time_ax.bar(
        positions,
        means,
        yerr=stds,
        capsize=5,
        color=[colours(i % 10) for i in positions],
        alpha=0.85,
    )
    for x, (m, s) in enumerate(zip(means, stds, strict=True)):
        if math.isfinite(m):
            time_ax.annotate(
                f"{m:.3g} s",
                xy=(x, m + s),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
    tops = [m + s for m, s in zip(means, stds, strict=True) if math.isfinite(m + s)]
    if tops:  # room above the tallest bar for its value label
        time_ax.set_ylim(0, max(tops) * 1.15)
    time_ax.set_xticks(list(positions))
    time_ax.set_xticklabels([g.replace(" ", "\n") for g in groups["group"]], fontsize=9)
    time_ax.set_ylabel("seconds per epoch")
    time_ax.set_title("Median epoch time, epochs 2..N (mean ± std over runs)")
    time_ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        describe(summary).split(";")[0]
        + " — "
        + "grouped by "
        + (", ".join(short_name(k) for k in summary.by) or "nothing")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the command -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodecli report",
        description="Compare run records: groups by the config keys that vary (seed "
        "excluded), mean ± std over the runs of each group.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        default=["outputs"],
        metavar="PATH",
        help="run or sweep folders to read (default: outputs)",
    )
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY[,KEY]",
        help="group by these config keys (default: those that vary)",
    )
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose KEY equals VALUE (a|b for several); repeatable",
    )
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="KEY=VALUE",
        help="group the speed-up is relative to (default sensealg=direct "
        "when present; 'none' to omit)",
    )
    parser.add_argument("--format", choices=FORMATS, default="rich", help="output format")
    parser.add_argument("--plot", metavar="FILE.png", help="also write a PNG figure")
    parser.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S,
        metavar="SECONDS",
        help="a 'running' record without heartbeat for this long is stale (default 600)",
    )
    return raise_usage_errors(parser, "nodecli report --help lists the options")


def report_command(args: list[str]) -> int:
    options = _parser().parse_args(args)
    if options.plot:
        target = Path(options.plot)
        if target.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ConfigError(f"--plot {options.plot}: use a .png (or .pdf/.svg) file name")
        if not target.parent.is_dir():
            raise ConfigError(f"--plot {options.plot}: folder {target.parent} does not exist")
    df = load_runs(options.paths, options.stale_after)
    where = " ".join(options.paths)
    if df.empty:
        raise ConfigError(f"no run records found under {where}")
    df = filter_runs(df, options.where)
    if df.empty:
        raise ConfigError(f"no run under {where} matches --where {' '.join(options.where)}")
    by = [k for item in options.by for k in item.split(",") if k] or None
    summary = summarize(df, by, options.baseline)
    if options.format == "rich":
        render_rich(summary)
    else:
        render = {
            "markdown": render_markdown,
            "csv": render_csv,
            "json": render_json,
            "latex": render_latex,
        }[options.format]
        sys.stdout.write(render(summary))
        if options.format in ("csv", "latex") and len(summary.incomplete):
            for _, r in summary.incomplete.iterrows():
                warn(f"{r['status']} run kept out of the means: {r['run_dir']}")
    if options.plot:
        plot(df, summary, Path(options.plot))
        print(f"plot: {options.plot}", file=sys.stderr)
    return 0
