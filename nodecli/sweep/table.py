"""The table `nodecli sweep` prints at the end: one row per job, read from the records
through nodecli.record.run (the only reader of record files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nodecli.record.layout import METRICS_FILE, RUN_FILE
from nodecli.record.read import read_metrics, read_run_json
from nodecli.sweep.folders import find_job_dir
from nodecli.sweep.plan import SweepPlan

if TYPE_CHECKING:
    from rich.table import Table


@dataclass
class JobResult:
    num: int
    overrides: list[str]
    job_dir: Path | None
    status: str
    epochs: int | None = None
    train_acc: float | None = None
    test_acc: float | None = None
    train_time_s: float | None = None
    error: str | None = None


def collect_results(plan: SweepPlan) -> list[JobResult]:
    results = []
    for num, job in enumerate(plan.jobs):
        job_dir = find_job_dir(plan.sweep_dir, num, job, plan.job_dirs)
        result = JobResult(num, job, job_dir, "not run")
        if job_dir is not None and (job_dir / RUN_FILE).exists():
            try:
                info = read_run_json(job_dir)
                result.status = str(info.get("status", "unknown"))
                result.error = info.get("error")
            except ValueError as exc:
                result.status, result.error = "unreadable", str(exc)
            try:
                metrics = read_metrics(job_dir / METRICS_FILE)
                result.epochs = len(metrics)
                if len(metrics):
                    result.train_acc = float(metrics["train_acc"].iloc[-1])
                    result.test_acc = float(metrics["test_acc"].iloc[-1])
                    result.train_time_s = float(metrics["train_time_s"].sum())
            except ValueError:
                pass
        results.append(result)
    return results


def summary_table(plan: SweepPlan, results: list[JobResult]) -> Table:
    """One row per job. The overrides wrap (user text of any length); the other columns
    keep their whole width, so a long override never cuts a status or a number, and the
    table fits 80 columns. Errors follow the table (`job_errors`). Cells are rich Text:
    a config value is never read as markup."""
    from rich.table import Table
    from rich.text import Text

    varying = varying_keys(plan.jobs)
    constant = sorted({o for job in plan.jobs for o in job if o.split("=")[0] not in varying})
    colours = {"completed": "green", "failed": "red", "interrupted": "yellow"}

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None or value != value else format(value, fmt)

    rows = []
    for r in results:
        shown = [o for o in r.overrides if o.split("=")[0] in varying] or r.overrides
        rows.append(
            [
                str(r.num),
                " ".join(shown) or "(defaults)",
                r.status,
                "" if r.epochs is None else str(r.epochs),
                num(r.train_acc, ".2f"),
                num(r.test_acc, ".2f"),
                num(r.train_time_s, ".3f"),
            ]
        )
    common = "common: " + " ".join(constant) if constant else ""
    table = Table(
        title=Text(f"nodecli sweep: {plan.sweep_dir}"),
        caption=Text(f"{common}{'; ' if common else ''}accuracies in %, time: seconds of training"),
    )
    for i, (name, justify) in enumerate(SUMMARY_COLUMNS):
        if name == "overrides":
            table.add_column(name, justify=justify, overflow="fold", min_width=12)
        else:
            widest = max([len(name), *(len(row[i]) for row in rows)])
            table.add_column(name, justify=justify, no_wrap=True, min_width=widest)
    for row in rows:
        status = Text(row[2], style=colours.get(row[2], "magenta"))
        table.add_row(*(status if i == 2 else Text(cell) for i, cell in enumerate(row)))
    return table


SUMMARY_COLUMNS = (
    ("job", "right"),
    ("overrides", "left"),
    ("status", "left"),
    ("epochs", "right"),
    ("train acc", "right"),
    ("test acc", "right"),
    ("time", "right"),
)


def job_errors(results: list[JobResult]) -> list[str]:
    """`job N (status): error` for each job that did not complete and left an error."""
    return [
        f"job {r.num} ({r.status}): {r.error}"
        for r in results
        if r.status != "completed" and r.error
    ]


def varying_keys(jobs: list[list[str]]) -> set[str]:
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}
