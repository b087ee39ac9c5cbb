"""`nodecli report --epochs`: each group's per-epoch table in the reference tutorial's
units, so its printed lines (`[1/9]	Time 0.0871s	Training Accuracy: 37.48148%	Test
Accuracy: 40.00000%`) can be put next to ours: time in seconds, accuracies in percent with
five decimals, mean ± std over the group's runs.

Imports nodecli.report.aggregate (the per-epoch numbers) and render_table (fitting, escaping).
"""

from __future__ import annotations

import json
import math

import pandas as pd

from nodecli.report.aggregate import Summary, epoch_table
from nodecli.report.table import (
    fitted_tables,
    json_records,
    kept_out_lines,
    latex_comment,
    latex_escape,
    markdown_table,
    md_escape,
    mixed_lines,
    report_console,
)

# column in epoch_table, header, format of the mean and of the std alike (a std with
# fewer decimals than its mean reads as if the mean were known better than it is)
COLUMNS = (
    ("train_time_s", "Time (s)", ".4f"),
    ("train_acc", "Training Accuracy (%)", ".5f"),
    ("test_acc", "Test Accuracy (%)", ".5f"),
    ("train_loss", "loss", ".4f"),
    ("nfe_forward", "NFE fwd", ".0f"),
    ("nfe_backward", "NFE bwd", ".0f"),
)


def _cell(row: pd.Series, column: str, spec: str) -> str:
    mean, std = row.get(f"{column}_mean", math.nan), row.get(f"{column}_std", math.nan)
    if not isinstance(mean, float) or not math.isfinite(mean):
        return "–"
    text = format(mean, spec)
    return f"{text} ± {format(std, spec)}" if math.isfinite(std) else text


def epoch_rows(table: pd.DataFrame) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per group label: headers and text rows, the epoch written as the reference does
    (`[1/9]`, N being the group's last epoch)."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    present = [c for c in COLUMNS if f"{c[0]}_mean" in table]
    headers = ["epoch", "runs", *(c[1] for c in present)]
    for label, g in table.groupby("group", sort=False):
        last = int(g["epoch"].max())
        rows = [
            [f"[{int(r['epoch'])}/{last}]", str(r["runs"])]
            + [_cell(r, column, spec) for column, _, spec in present]
            for _, r in g.iterrows()
        ]
        out[str(label)] = (headers, rows)
    return out


MEAN_NOTE = "mean ± std over the runs that reached each epoch"


def render_epochs(df: pd.DataFrame, summary: Summary, fmt: str) -> str | None:
    """The per-epoch view in FMT; rich prints it itself and returns None. Mixed groups and
    runs kept out of the means are said as in the comparison view (csv: by the caller,
    on stderr)."""
    table = epoch_table(df, summary)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        data = {
            "label_keys": summary.header,
            "mixed": summary.mixed,
            "epochs": json_records(table),
            "incomplete": json_records(summary.incomplete),
        }
        return json.dumps(data, indent=2) + "\n"
    per_group = epoch_rows(table)
    titles = {
        label: f"{summary.header}: {label}" + (" (mixed!)" if label in summary.mixed else "")
        for label in per_group
    }
    footer = [MEAN_NOTE, *mixed_lines(summary), *kept_out_lines(summary)]
    if fmt == "rich":
        console = report_console()
        for label, (headers, rows) in per_group.items():
            for part in fitted_tables(console, titles[label], headers, rows, keep=2):
                console.print(part)
        for line in footer:
            console.print(line, markup=False)
        return None
    if fmt == "markdown":
        return (
            "".join(
                f"\n**{_md_strong(titles[label])}**\n\n{markdown_table(headers, rows)}\n"
                for label, (headers, rows) in per_group.items()
            )
            + "\n"
            + "".join(f"- {md_escape(line)}\n" for line in footer)
        )
    lines = []  # latex: one tabular per group
    for label, (headers, rows) in per_group.items():
        lines.append(latex_comment(titles[label]))
        lines.append(r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}")
        lines.append(r"\hline")
        name = latex_escape(titles[label])
        lines.append(rf"\multicolumn{{{len(headers)}}}{{l}}{{{name}}} \\")  # typeset, not a comment
        lines.append(r"\hline")
        lines.append(" & ".join(latex_escape(h) for h in headers) + r" \\")
        lines.append(r"\hline")
        lines += [" & ".join(latex_escape(c) for c in cells) + r" \\" for cells in rows]
        lines += [r"\hline", r"\end{tabular}", ""]
    lines += [latex_comment(line) for line in footer]
    return "\n".join(lines) + "\n"


def _md_strong(text: str) -> str:
    """TEXT inside `**…**`: escaped, and no space against the markers (`** x **` is not
    bold)."""
    return " ".join(md_escape(text).split()) or "(empty)"
