"""The report's `--x KEY` figure: held memory, peak memory and epoch time against a swept
numeric key (a field's width, the horizon), one line per combination of the other grouping
keys, on log axes: the shape of a gradient-method trade-off, which one point per group
cannot show."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nodecli.report.aggregate import Summary
from nodecli.report.grouping import format_value, is_choice, key_names, short_name
from nodecli.report.plot import LITERAL_TEXT, MARKERS
from nodecli.report.table import memory_unit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Colours of the sensitivity methods in every `--x` figure (others: the tab10 cycle).
SENSEALG_COLOURS = {
    "direct": "C3",
    "adjoint": "C0",
    "checkpoint": "C2",
    "interpolating": "C1",
    "gauss": "C4",
}
LINE_DASHES = ("-", "--", ":", "-.")
X_PANELS = (
    ("hold_memory_bytes", "Held for backward"),
    ("peak_memory_bytes", "Peak of the training step"),
    ("epoch_time_s", "Epoch time"),
)
X_TICKS = 12  # at most this many x values get a tick each


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


def x_key(summary: Summary, key: str) -> str:
    """The short name of grouping key KEY (`model.hidden`, `sensealg.name` given as
    `sensealg`), when every counted group holds a finite number for it; else a
    ConfigError naming the grouping keys that do."""
    from nodecli.errors import ConfigError

    groups = summary.groups[summary.groups["runs"] > 0]
    shorts = [short_name(k) for k in summary.by]
    numeric = [
        s
        for s in shorts
        if len(groups) and all(_is_number(summary.key_values[g].get(s)) for g in groups["group"])
    ]
    valid = ", ".join(numeric) if numeric else "none (group by a numeric key with --by)"
    wanted = short_name(key)
    if wanted not in shorts:
        raise ConfigError(
            f"--x: '{key}' is not a grouping key ({', '.join(shorts) or 'none'}); valid: {valid}"
        )
    if wanted not in numeric:
        raise ConfigError(f"--x: '{key}' has values that are not numbers; valid: {valid}")
    return wanted


def _line_styles(values: list[Any], colour_key: bool) -> dict[Any, tuple[Any, str, str]]:
    """Colour, dash and marker per value: colours for the colour key's values (a method's
    own colour when the key is sensealg), dash and marker pairs for the others."""
    if colour_key:
        import matplotlib.pyplot as plt

        size = 10 if len(values) <= 10 else 20
        cmap = plt.get_cmap(f"tab{size}")
        return {
            v: (SENSEALG_COLOURS.get(str(v)) or cmap(i % size), "-", "")
            for i, v in enumerate(values)
        }
    return {
        v: ("black", LINE_DASHES[i % len(LINE_DASHES)], MARKERS[i % len(MARKERS)])
        for i, v in enumerate(values)
    }


def _plain_log_labels(axis: Any) -> None:
    """Tick labels of a log AXIS as plain numbers (`100`, `0.1`): matplotlib's default
    is maths text, which LITERAL_TEXT leaves unparsed. Between the powers of ten, 2 and 5
    are labelled when the axis spans under 2.2 decades (all of 2..9 under 0.7)."""
    from matplotlib.ticker import FuncFormatter

    ax = axis.axes
    low, high = ax.get_xlim() if axis is ax.xaxis else ax.get_ylim()  # autoscaled now
    decades = math.log10(high / low) if low > 0 and high > low else 99.0
    keep = set(range(2, 10)) if decades < 0.7 else {2, 5} if decades < 2.2 else set()

    def minor(value: float, _: Any) -> str:
        if value <= 0:
            return ""
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        return f"{value:g}" if mantissa in keep else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _common_folder(run_dirs: list[str]) -> str:
    """The folder that holds RUN_DIRS, relative to the working folder when inside it."""
    import os

    try:
        folder = os.path.commonpath(run_dirs) if run_dirs else ""
    except ValueError:  # paths on different drives
        return ""
    if len(run_dirs) == 1:
        folder = os.path.dirname(folder)
    relative = os.path.relpath(folder) if folder else ""
    return folder if relative.startswith("..") else relative


def _value_text(name: str, value: Any, choice: bool) -> str:
    text = f"{value:g}" if _is_number(value) else format_value(value)
    return text if choice else f"{name}={text}"


def build_x_figure(df: pd.DataFrame, summary: Summary, key: str) -> Figure | None:
    """Held memory, peak memory and epoch time of SUMMARY's groups against grouping key
    KEY (numeric, as `x_key` checks), log y; log x when KEY's values are positive and
    span more than 10×. One line per combination of the other grouping keys: its colour
    says the value of sensealg (or of the first other key), its dash and marker the values
    of the rest; the legend below names colours and styles separately, so it stays short
    at 80 groups. None when no group has an averaged run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, NullLocator

    groups = summary.groups[summary.groups["runs"] > 0].reset_index(drop=True)
    if groups.empty:
        return None
    shorts = [short_name(k) for k in summary.by]
    names = dict(zip(shorts, key_names(summary.by), strict=True))
    choice = {short_name(k): is_choice(k) for k in summary.by}
    others = [s for s in shorts if s != key]
    colour_by = "sensealg" if "sensealg" in others else (others[0] if others else None)
    style_by = [s for s in others if s != colour_by]

    def values_of(label: str, keys: list[str]) -> tuple[Any, ...]:
        return tuple(summary.key_values[label].get(k) for k in keys)

    labels = list(groups["group"])
    colour_values = list(dict.fromkeys(values_of(g, [colour_by])[0] for g in labels if colour_by))
    style_values = list(dict.fromkeys(values_of(g, style_by) for g in labels))
    colours = _line_styles(colour_values, True)
    styles = _line_styles(style_values, False)
    xs_all = sorted({float(summary.key_values[g][key]) for g in labels})
    log_x = xs_all[0] > 0 and xs_all[-1] > 10 * xs_all[0]
    n_colours = max(len(colour_values), 1)
    n = len(labels)
    legend_rows = max(math.ceil(len(colour_values) / 6), math.ceil(len(style_values) / 4))
    height = 4.6 + 0.3 * (legend_rows + 2)
    with plt.rc_context({"font.size": 9, "axes.titlesize": 10, **LITERAL_TEXT}):
        fig, axes = plt.subplots(1, 3, figsize=(13, height), layout="constrained")
        for ax, (column, title) in zip(axes, X_PANELS, strict=True):
            means = groups.get(f"{column}_mean")
            if means is None or means.isna().all():
                ax.text(0.5, 0.5, f"{title}: not recorded", ha="center", va="center")
                ax.set_axis_off()
                continue
            unit, scale = ("s", 1) if column == "epoch_time_s" else memory_unit(summary, column)
            mean_of = dict(zip(labels, means.to_numpy(dtype=float) / scale, strict=True))
            lines: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
            for g in labels:
                lines.setdefault(values_of(g, others), []).append(
                    (float(summary.key_values[g][key]), mean_of[g])
                )
            for line_key, points in lines.items():
                values = dict(zip(others, line_key, strict=True))
                colour_value = values.get(colour_by) if colour_by else None
                rank = colour_values.index(colour_value) if colour_by else 0
                colour = colours[colour_value][0] if colour_by else "C0"
                _, dash, marker = styles[tuple(values[k] for k in style_by)]
                points.sort()
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    dash,
                    marker=marker or "o",
                    color=colour,
                    # Earlier colours drawn wider: equal values stay visible under later ones.
                    linewidth=1.2 + 3.0 * (n_colours - 1 - rank) / max(n_colours - 1, 1),
                    markersize=4 + 3.0 * (n_colours - 1 - rank) / max(n_colours - 1, 1),
                    alpha=0.85,
                )
            if log_x:
                ax.set_xscale("log")
                _plain_log_labels(ax.xaxis)
            ax.set_yscale("log")
            _plain_log_labels(ax.yaxis)
            if len(xs_all) <= X_TICKS:
                ax.xaxis.set_major_locator(FixedLocator(xs_all))
                ax.set_xticklabels([f"{x:g}" for x in xs_all])
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel(names[key])
            ax.set_title(f"{title} ({unit})")
            ax.grid(True, which="both", alpha=0.3)
        # Two legends below the panels, colours left and line styles right: 5 colours and
        # 4 styles name 20 lines in 9 entries.
        if colour_by:
            fig.legend(
                handles=[
                    Line2D([], [], color=colours[v][0], linewidth=2.5,
                           label=_value_text(names[colour_by], v, choice[colour_by]))
                    for v in colour_values
                ],
                loc="outside lower left" if style_by else "outside lower center",
                ncols=min(len(colour_values), 6),
                title=f"colour: {names[colour_by]}",
                frameon=False,
            )  # fmt: skip
        if style_by:
            fig.legend(
                handles=[
                    Line2D([], [], color="black", linestyle=styles[v][1], marker=styles[v][2],
                           label=", ".join(_value_text(names[k], x, choice[k])
                                           for k, x in zip(style_by, v, strict=True)))
                    for v in style_values
                ],
                loc="outside lower right",
                ncols=min(len(style_values), 4),
                title=f"line and marker: {', '.join(names[k] for k in style_by)}",
                frameon=False,
            )  # fmt: skip
        folder = _common_folder(sorted(summary.run_groups))
        fig.suptitle(
            f"nodecli report{' ' + folder if folder else ''}: {int(groups['runs'].sum())} "
            f"run(s) in {n} {'group' if n == 1 else 'groups'}, mean over runs against "
            f"{names[key]}" + (f" (mixed: {', '.join(summary.mixed)})" if summary.mixed else "")
        )
    return fig
