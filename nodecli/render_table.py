"""The report as text: rich (terminal), markdown, CSV, JSON and LaTeX tables.

Imports nodecli.summary (the Summary it renders), grouping (names) and console.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from nodecli.grouping import short_name
from nodecli.summary import METRICS, Summary

FORMATS = ("rich", "markdown", "csv", "json", "latex")


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
