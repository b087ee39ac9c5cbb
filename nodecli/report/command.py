"""`nodecli report`: the command line only. Reading lives in nodecli.report.load, grouping and
aggregation (the Python API) in nodecli.report.aggregate, text in nodecli.report.table, the figure
in nodecli.report.plot; the record files are read by nodecli.record.run.

`load_runs` and `summarize` stay importable from here (the README's Python API).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodecli.errors import EXIT_FAILED, EXIT_OK, ConfigError, raise_usage_errors
from nodecli.record.layout import STALE_AFTER_S, find_run_dirs

if TYPE_CHECKING:
    from nodecli.report.aggregate import load_runs, summarize

__all__ = ["load_runs", "report_command", "summarize"]

FORMATS = ("rich", "markdown", "csv", "json", "latex")


def __getattr__(name: str) -> Any:
    """`load_runs` and `summarize`, imported when asked for: they pull in pandas (~0.4 s),
    which a refused command line must not wait for."""
    if name in ("load_runs", "summarize"):
        from nodecli.report import aggregate

        return getattr(aggregate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        default=None,
        metavar="KEY=VALUE",
        help="group the speed-up is relative to (default sensealg=direct "
        "when present; 'none' to omit)",
    )
    parser.add_argument("--format", choices=FORMATS, default="rich", help="output format")
    parser.add_argument("--plot", metavar="FILE", help="also write the figure (.png, .svg or .pdf)")
    parser.add_argument(
        "--facet",
        metavar="KEY",
        help="one accuracy panel per value of KEY in the figure (grouped by KEY too)",
    )
    parser.add_argument(
        "--x",
        metavar="KEY",
        help="with --plot: draw held memory, peak memory and epoch time against KEY (a "
        "numeric grouping key), one line per value of the other keys, instead",
    )
    parser.add_argument(
        "--epochs",
        action="store_true",
        help="print each group's per-epoch table (time, loss, accuracies, NFE) instead",
    )
    parser.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S,
        metavar="SECONDS",
        help="a 'running' record without heartbeat for this long is stale (default 600)",
    )
    return raise_usage_errors(parser, "nodecli report --help lists the options")


def parse_options(args: list[str]) -> argparse.Namespace:
    """The command line, checked before pandas and matplotlib are imported (seconds)."""
    options = _parser().parse_args(args)
    stale = options.stale_after
    if not (math.isfinite(stale) and stale > 0):
        raise ConfigError(
            f"--stale-after={stale:g} is out of range: it must be a positive finite number "
            f"of seconds (default {STALE_AFTER_S:g})"
        )
    given = [("--plot", options.plot), ("--baseline", options.baseline)]
    given += [("--facet", options.facet), ("--x", options.x)]
    given += [("--by", v) for v in options.by]
    for flag, value in given:
        if value is not None and not value.strip(" ,"):  # '' silently meant the default
            raise ConfigError(f"{flag} is empty; give a value (nodecli report --help)")
    if any(not path.strip() for path in options.paths):  # '' read the whole current folder
        raise ConfigError("an empty path was given; name run or sweep folders (or none)")
    if options.x is not None and not options.plot:
        raise ConfigError("--x draws a figure: give --plot FILE too")
    if options.x is not None and options.facet is not None:
        raise ConfigError("--x and --facet draw different figures; give one of them")
    if options.plot:
        target = Path(options.plot)
        if target.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ConfigError(f"--plot {options.plot}: use a .png (or .pdf/.svg) file name")
        if not target.parent.is_dir():
            raise ConfigError(f"--plot {options.plot}: folder {target.parent} does not exist")
    return options


def report_command(args: list[str]) -> int:
    options = parse_options(args)
    where = " ".join(options.paths)
    # Found before pandas is imported: a wrong path is answered at once.
    run_dirs = find_run_dirs(options.paths)
    if not run_dirs:
        raise ConfigError(f"no run records found under {where}")

    from nodecli.report import table as tables
    from nodecli.report.aggregate import DEFAULT_BASELINE, filter_runs, load_runs, summarize
    from nodecli.report.epochs import render_epochs
    from nodecli.report.grouping import resolve_key
    from nodecli.report.load import unstarted_jobs, warn

    if options.baseline is None:
        options.baseline = DEFAULT_BASELINE
    df = load_runs(run_dirs, options.stale_after)
    for line in unstarted_jobs(options.paths, run_dirs):
        warn(line)
    if df.empty:
        raise ConfigError(f"no run records found under {where}")
    df = filter_runs(df, options.where)
    if df.empty:
        raise ConfigError(f"no run under {where} matches --where {' '.join(options.where)}")
    by = [k for item in options.by for k in item.split(",") if k] or None
    summary = summarize(df, by, options.baseline)
    facet = None
    if options.facet:
        facet = resolve_key(options.facet, df.attrs.get("config_columns", []), "--facet")
        if facet not in summary.by:  # each panel must hold whole groups
            summary = summarize(df, [*summary.by, facet], options.baseline)
    plotted = False
    if options.plot:
        # Drawn before any table is printed: a reader that closes the pipe early
        # (`| head`) ends the process at the next print, and the figure was never written.
        from nodecli.report.plot import plot  # matplotlib: only for a figure
        from nodecli.report.scaling import build_x_figure, x_key

        figure = build_x_figure(df, summary, x_key(summary, options.x)) if options.x else None
        if options.x and figure is None:
            plotted = False
        else:
            plotted = plot(df, summary, Path(options.plot), facet, figure)
        if plotted:
            print(f"plot: {options.plot}", file=sys.stderr)
    if options.epochs:
        if not (summary.groups["runs"] > 0).any():  # else: a footer alone, and exit 0
            for line in tables.kept_out_lines(summary):
                warn(line)
            warn("--epochs: no completed run with a finished epoch; nothing to show")
            return EXIT_FAILED
        text = render_epochs(df, summary, options.format)
        if text is not None:
            sys.stdout.write(text)
        if options.format == "csv":  # a CSV has no place for notes
            for line in [*tables.mixed_lines(summary), *tables.kept_out_lines(summary)]:
                warn(line)
    elif options.format == "rich":
        tables.render_rich(summary)
    else:
        render = {
            "markdown": tables.render_markdown,
            "csv": tables.render_csv,
            "json": tables.render_json,
            "latex": tables.render_latex,
        }[options.format]
        sys.stdout.write(render(summary))
        if options.format in ("csv", "latex"):  # no table of them in these formats
            for line in tables.kept_out_lines(summary):
                warn(line)
    if options.plot and not plotted:
        warn(f"--plot {options.plot}: no completed run with a finished epoch; not written")
        return EXIT_FAILED
    return EXIT_OK
