"""The report as text: rich (terminal), markdown, CSV, JSON and LaTeX tables.

Every format carries the same whole labels. The terminal table never cuts a cell: it keeps
one row per group and splits the figures over several tables when the width (COLUMNS, the
terminal, or 200 in a pipe) is too small. Imports nodecli.report.aggregate (the Summary it
renders), grouping (names) and console.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from nodecli.console import Console, make_console
from nodecli.report.aggregate import METRICS, NO_EPOCH, Summary
from nodecli.report.grouping import LABEL_SEPARATOR, short_name


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


def speedup_cell(row: pd.Series) -> str:
    """`1.91×`; `1.91×*` when compared with the pooled baseline runs (explained below)."""
    value = row["speedup"]
    if not math.isfinite(value):
        return "–"
    return f"{value:.2f}×" + ("*" if row.get("speedup_note") else "")


def display_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The group table as text cells: header and rows (shared by rich/markdown/LaTeX).
    The first header names the grouping keys once; each row's first cell is the short
    label (`tsit5 · adjoint`).

    The figures come in the order a study compares them, so that the first of the tables
    a narrow terminal splits them into holds the epoch time and the speed-up: times,
    accuracies, NFE, memory."""
    with_speedup = summary.baseline is not None
    first, *rest = METRICS  # the epoch time, then the speed-up
    headers = [summary.header, "runs", "epochs", first[1]]
    headers += ["speed-up"] if with_speedup else []
    headers += [h for _, h, _ in rest]
    units = {c: memory_unit(summary, c) for c in summary.memory_columns}
    headers += [memory_header(c, units[c][0]) for c in summary.memory_columns]
    rows = []
    for _, row in summary.groups.iterrows():
        runs = str(row["runs"])
        if row["incomplete"]:
            runs += f" (+{row['incomplete']})"
        if row["mixed"]:
            runs += " mixed!"
        low, high = int(row["epochs_min"]), int(row["epochs"])
        cells = [row["group"], runs, str(high) if low == high else f"{low}–{high}"]
        cells.append(_cell(row, first[0], first[2]))
        cells += [speedup_cell(row)] if with_speedup else []
        cells += [_cell(row, metric, spec) for metric, _, spec in rest]
        cells += [_cell(row, c, ".1f", units[c][1]) for c in summary.memory_columns]
        rows.append(cells)
    return headers, rows


def incomplete_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    headers = [summary.header, "status", "epochs", "heartbeat", "error", "run"]
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
    text = f"{summary.n_runs} run(s), {done} averaged; grouped by {by}; mean ± std over runs"
    if summary.baseline:
        base = ",".join(f"{k}={v}" for k, v in summary.baseline.items())
        text += f"; speed-up = epoch time of {base} / epoch time of the group"
    return text


INCOMPLETE_NOTE = (
    "runs (+k): k runs not completed or with no finished epoch, kept out of the means; "
)
NOTES = (
    "epoch time = median over epochs 2..N (epoch 1 when N = 1); "
    "NFE = vector-field evaluations per epoch; memory = peak over epochs"
)


def notes(summary: Summary) -> list[str]:
    """The lines under the table: what was averaged, which keys follow from others, which
    groups mix runs that differ, and which speed-ups use the pooled baseline."""
    lines = [describe(summary)]
    if summary.determined:
        decided = ", ".join(f"{k} (by {short_name(v)})" for k, v in summary.determined.items())
        lines.append(f"not grouped by keys another key decides: {decided}")
    lines += mixed_lines(summary)
    pooled = summary.groups[summary.groups["speedup_note"] != ""] if len(summary.groups) else []
    if len(pooled):
        lines.append(
            "speed-up*: no baseline group shares this group's other keys; "
            + str(pooled["speedup_note"].iloc[0])
        )
    incomplete = len(summary.groups) and bool((summary.groups["incomplete"] > 0).any())
    lines.append((INCOMPLETE_NOTE if incomplete else "") + NOTES)
    return lines


def mixed_lines(summary: Summary) -> list[str]:
    """One line per group that averages runs differing in a key it hides."""
    return [
        f"mixed! group '{label}' averages runs that differ in {what}; "
        "add the key to --by or narrow with --where"
        for label, what in summary.mixed.items()
    ]


def kept_out_lines(summary: Summary) -> list[str]:
    """One line per run left out of the means (not completed, or no finished epoch)."""
    lines = []
    for _, r in summary.incomplete.iterrows():
        why = f" ({r['error']})" if r["error"] == NO_EPOCH else ""
        lines.append(f"{r['status']} run kept out of the means{why}: {r['run_dir']}")
    return lines


def one_line(text: str) -> str:
    """TEXT with its line breaks as spaces: a label (a config value) may hold newlines,
    which would end a Markdown cell, a LaTeX comment or a tabular row."""
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def latex_comment(line: str) -> str:
    """LINE as one LaTeX comment: a newline in a label would end the comment and typeset
    the rest."""
    return "% " + one_line(line)


# Narrower than this, a label and one figure no longer fit side by side and every cell
# wraps a character or two per line; such a terminal gets lines it has to wrap instead.
MIN_WIDTH = 40
# Spaces (and the style codes after them) at the end of a line.
TRAILING_SPACES = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$", re.MULTILINE)


class ReportConsole(Console):
    """Rich pads a left-justified table title to the table's width and keeps the space
    where it wraps a line; the report's lines end without trailing spaces."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        with self.capture() as capture:
            super().print(*objects, **kwargs)
        self.file.write(TRAILING_SPACES.sub(r"\1", capture.get()))


def report_console() -> Console:
    """A rich console as wide as COLUMNS when set (also in a pipe), else the terminal's
    width, else nodecli.console's pipe width; never narrower than MIN_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return ReportConsole(highlight=False, width=max(int(columns), MIN_WIDTH))
    # make_console's soft wrap would leave the notes unwrapped; wrap them at its width.
    return ReportConsole(highlight=False, width=max(make_console().width, MIN_WIDTH))


def wrap_header(header: str, width: int) -> str:
    """HEADER (`solver · sensealg · …`) on as many lines as needed to be WIDTH wide,
    broken only between key names, so the key list never makes the column wider."""
    lines: list[str] = []
    for name in header.split(LABEL_SEPARATOR):
        # +2: room for the " ·" that ends a line when the list goes on below it
        if lines and len(lines[-1]) + len(LABEL_SEPARATOR) + len(name) + 2 <= width:
            lines[-1] += LABEL_SEPARATOR + name
        else:
            lines.append(name)
    return f"{LABEL_SEPARATOR.rstrip()}\n".join(lines)


def fitted_tables(
    console: Console, title: str, headers: list[str], rows: list[list[str]], keep: int = 1
) -> list[Table]:
    """TABLEs of at most the console's width, nothing cut: the first KEEP columns (the
    labels) in each, the other columns split over as many tables as needed."""

    label_width = max([len(r[0]) for r in rows] + [24])
    names = [wrap_header(headers[0], label_width), *headers[1:]]

    fold = False  # set when even labels + one figure exceed the width

    def build(columns: list[int], part: str) -> Table:
        # Text, not str: a label is a config value (dataset.root='/tmp/[/red]x'), which
        # rich would read as markup: a MarkupError, or a label silently restyled.
        table = Table(title=Text(title + part), title_justify="left")
        for i in columns:
            # A label too long for the width wraps onto more lines rather than being cut.
            wrap = fold and i == 0
            table.add_column(
                Text(names[i]), justify="left" if i < keep else "right", no_wrap=not wrap,
                overflow="fold" if wrap else "ellipsis",
            )  # fmt: skip
        for cells in rows:
            table.add_row(*(Text(cells[i]) for i in columns))
        return table

    def width(columns: list[int]) -> int:
        # Measured without the console's width limit (a measurement is clamped to it).
        unlimited = console.options.update_width(10**5)
        return Measurement.get(console, unlimited, build(columns, "")).maximum

    # Fold the labels when any one figure does not fit beside them (not only the first).
    fold = any(width([*range(keep), i]) > console.width for i in range(keep, len(headers)))
    chunks: list[list[int]] = []
    current = list(range(keep))
    for i in range(keep, len(headers)):
        if len(current) > keep and width([*current, i]) > console.width:
            chunks.append(current)
            current = list(range(keep))
        current.append(i)
    chunks.append(current)
    if len(chunks) == 1:
        return [build(chunks[0], "")]
    return [build(c, f" ({n}/{len(chunks)})") for n, c in enumerate(chunks, start=1)]


def render_rich(summary: Summary) -> None:
    console = report_console()
    headers, rows = display_table(summary)
    for table in fitted_tables(console, "nodecli report", headers, rows):
        console.print(table)
    for line in notes(summary):
        console.print(line, markup=False)
    if len(summary.incomplete):
        # One block per run rather than a table: errors and paths are long, and a table
        # would have to cut them at 80 columns.
        console.print("\n[bold]runs kept out of the means[/bold]")
        colours = {"failed": "red", "interrupted": "yellow", "stale": "magenta"}
        for label, status, epochs, heartbeat, error, run in incomplete_table(summary)[1]:
            colour = colours.get(status, "cyan")
            console.print(
                f"[{colour}]{escape(status)}[/{colour}]: {escape(label)} "
                f"({epochs} epochs done, heartbeat {heartbeat})"
            )
            if error:
                console.print(f"  error: {error}", markup=False)
            console.print(f"  run: {run}", markup=False)


MARKDOWN_SPECIAL = "\\|*`<>"  # what would end a cell or turn a value into markup


def md_escape(text: str) -> str:
    """TEXT as literal Markdown on one line: `*em*`, `<b>`, `` `code` `` and backslashes
    in config values print as typed. Underscores are left alone: GitHub does not read
    `layer_style` as emphasis, and `layer\\_style` would clutter every raw table."""
    return one_line("".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in text))


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |"]
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |")
    lines += ["| " + " | ".join(md_escape(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


def render_markdown(summary: Summary) -> str:
    text = markdown_table(*display_table(summary))
    text += "\n\n" + "".join(f"- {md_escape(line)}\n" for line in notes(summary))
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


def latex_escape(text: str) -> str:
    # one_line: a blank line inside a tabular is an error
    out = "".join(LATEX_SPECIAL.get(c, c) for c in one_line(text))
    for text_char, latex in (("±", r"$\pm$"), ("×", r"$\times$"), ("–", "--"), ("·", r"$\cdot$")):
        out = out.replace(text_char, latex)
    # A cell opening a row right after `\\` must not start with `[`: LaTeX would read it
    # as the row's spacing argument (`[1/9]` of --epochs: "Illegal unit of measure").
    return "{}" + out if out.startswith("[") else out


def render_latex(summary: Summary) -> str:
    headers, rows = display_table(summary)
    spec = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{tabular}{" + spec + "}", r"\hline"]
    lines.append(" & ".join(latex_escape(h) for h in headers) + r" \\")
    lines.append(r"\hline")
    lines += [" & ".join(latex_escape(c) for c in cells) + r" \\" for cells in rows]
    lines += [r"\hline", r"\end{tabular}"]
    lines += [latex_comment(line) for line in notes(summary)]
    return "\n".join(lines) + "\n"


def jsonable(value: Any) -> Any:
    """VALUE as JSON has it: numpy scalars as Python numbers, lists element by element,
    NaN, inf and pandas' NA as null."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """FRAME's rows as JSON-ready dicts (NaN and inf as null, numpy scalars as Python)."""
    return [{k: jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def render_json(summary: Summary) -> str:
    data = {
        "group_by": [short_name(k) for k in summary.by],
        "label_keys": summary.header,
        "determined": {k: short_name(v) for k, v in summary.determined.items()},
        "mixed": summary.mixed,
        "baseline": summary.baseline,
        "groups": [
            {**row, **jsonable_dict(summary.key_values.get(row["group"], {}))}
            for row in json_records(summary.groups)
        ],
        "incomplete": json_records(summary.incomplete),
    }
    return json.dumps(data, indent=2) + "\n"


def jsonable_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in values.items()}


def render_csv(summary: Summary) -> str:
    """The groups as CSV; a cell holding a list (the seeds) as its items joined by ' '."""
    frame = summary.groups.copy()
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = frame[column].map(
                lambda v: " ".join(map(str, v)) if isinstance(v, list) else v
            )
    return frame.to_csv(index=False)
