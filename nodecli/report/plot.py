"""The report's figure: the questions a sensitivity-method study asks, one panel each.

- test accuracy per epoch (mean line, ± std band; one panel per `--facet` value); groups
  whose curves coincide are drawn once and named as coinciding in the legend;
- epoch time per group (horizontal bars, so labels never collide, value and speed-up at
  each bar) and NFE forward/backward per group beside it;
- the trade-offs: epoch time vs held memory and epoch time vs final test accuracy, with
  the Pareto front dashed.

Each group keeps one colour and marker in every panel; one legend below the panels names
them. The figure grows with the number of groups and its fonts shrink, so 1 to 30 groups
stay readable. Imports nodecli.report.aggregate and grouping; writes PNG, SVG or PDF.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nodecli.atomic import atomic_write_bytes
from nodecli.report.aggregate import Summary
from nodecli.report.grouping import key_names, short_name
from nodecli.report.table import memory_unit

# Labels are config values, drawn as typed: `$a_b$` in a value is not matplotlib maths
# (an unparsable one would stop the report with a traceback).
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS = ("o", "s", "^", "D", "v", "P")
# Coinciding groups share one line; several such lines differ by dash and marker.
CLUSTER_STYLES = (("-", "x"), ("--", "+"), (":", "1"), ("-.", "2"))
LEGEND_CHARS = 150  # characters a 13-inch-wide legend holds at the fonts used
TICK_CHARS = 40  # a bar label's line: longer labels wrap (a 100-character path squeezed
# the bar panels to nothing and ran off the figure's left edge)
FACET_COLS = 5  # facet panels per row: 15 side by side overlapped and ran off the page


def wrap_label(label: str, chars: int) -> str:
    """LABEL on lines of at most CHARS characters, whole (long words break too)."""
    return textwrap.fill(label, chars, break_on_hyphens=False) or label


# Mean curves closer than this (percentage points, every epoch) are drawn as one.
COINCIDE_PP = 0.01


@dataclass
class Style:
    colour: Any
    marker: str


def _styles(labels: list[str]) -> dict[str, Style]:
    """One colour and marker per group, the same in every panel: tab10 up to 10 groups,
    tab20 beyond (bars show no marker), then the markers tell repeated colours apart."""
    import matplotlib.pyplot as plt

    size = 10 if len(labels) <= 10 else 20
    cmap = plt.get_cmap(f"tab{size}")
    return {
        label: Style(cmap(i % size), MARKERS[(i // size) % len(MARKERS)])
        for i, label in enumerate(labels)
    }


def _curves(df: pd.DataFrame, summary: Summary) -> dict[str, pd.DataFrame]:
    """Per counted group: test accuracy mean and std per epoch."""
    done = df[df["run_dir"].isin(summary.run_groups)].dropna(subset=["epoch"]).copy()
    done["group"] = done["run_dir"].map(summary.run_groups)
    done["test_acc"] = pd.to_numeric(done["test_acc"], errors="coerce")
    return {
        label: g.groupby("epoch")["test_acc"].agg(["mean", "std"]).fillna({"std": 0.0})
        for label, g in done.groupby("group", sort=False)
    }


def coinciding(curves: dict[str, pd.DataFrame], labels: list[str]) -> list[list[str]]:
    """LABELS partitioned into clusters whose mean curves agree within COINCIDE_PP at
    every epoch (same epochs); a lone group is a cluster of one."""
    clusters: list[list[str]] = []
    for label in labels:
        curve = curves[label]["mean"]
        for cluster in clusters:
            other = curves[cluster[0]]["mean"]
            if other.index.equals(curve.index) and (other - curve).abs().max() <= COINCIDE_PP:
                cluster.append(label)
                break
        else:
            clusters.append([label])
    return clusters


def _pareto(xs: np.ndarray, ys: np.ndarray, higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats in both (lower x, better y), by x."""
    sign = -1.0 if higher_is_better else 1.0
    front = []
    for i in range(len(xs)):
        beaten = any(
            xs[j] <= xs[i] and sign * ys[j] <= sign * ys[i] and (xs[j], ys[j]) != (xs[i], ys[i])
            for j in range(len(xs))
        )
        if not beaten and math.isfinite(xs[i]) and math.isfinite(ys[i]):
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


def _accuracy_panel(
    ax: Axes, curves: dict[str, pd.DataFrame], labels: list[str], styles: dict[str, Style]
) -> list[list[str]]:
    """Mean ± std of test accuracy per epoch; coinciding groups as one black line."""
    clusters = coinciding(curves, labels)
    last = 1
    shared = 0
    for cluster in clusters:
        curve = curves[cluster[0]]
        epochs = curve.index.to_numpy(dtype=float)
        mean, std = curve["mean"].to_numpy(), curve["std"].to_numpy()
        style = styles[cluster[0]]
        colour, marker, dash = style.colour, style.marker, "-"
        if len(cluster) > 1:
            dash, marker = CLUSTER_STYLES[shared % len(CLUSTER_STYLES)]
            colour, shared = "black", shared + 1
        ax.plot(epochs, mean, dash, marker=marker, color=colour, linewidth=1.8, markersize=5)
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
        last = max(last, int(epochs[-1]))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(last, 10)))
    if last == 1:  # one epoch: the locator's span 0.96..1.04 has no integer tick but 1
        ax.set_xticks([1])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    return [c for c in clusters if len(c) > 1]


def _fit_texts(fig: Figure, ax: Axes, texts: list[Any]) -> None:
    """Widen AX's x range until every value label TEXTS drew lies inside the axes.

    Each pass runs the figure's constrained layout alone, which places the axes as a
    draw does (a full draw also rasterised every glyph, ~3 times the cost; the written
    figure is the same byte for byte)."""
    if not texts:
        return
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    layout = fig.get_layout_engine()  # build_figure's: constrained
    for _ in range(4):
        layout.execute(fig)  # type: ignore[union-attr]
        box = ax.get_window_extent(renderer)
        over = max(t.get_window_extent(renderer).x1 for t in texts) - box.x1
        if over <= 0:
            return
        low, high = ax.get_xlim()
        ax.set_xlim(low, high + (over + 8) * (high - low) / max(box.width, 1.0) * 1.2)


def _time_panels(
    fig: Figure, time_ax: Axes, nfe_ax: Axes, groups: pd.DataFrame, styles: dict[str, Style]
) -> None:
    """Epoch time (bars ± std, value and speed-up at each bar) and NFE fwd/bwd per group."""
    labels = list(groups["group"])
    y = np.arange(len(labels))
    means = groups["epoch_time_s_mean"].to_numpy(dtype=float)
    stds = np.nan_to_num(groups["epoch_time_s_std"].to_numpy(dtype=float))
    colours = [styles[label].colour for label in labels]
    time_ax.barh(y, np.nan_to_num(means), xerr=stds, color=colours, alpha=0.85, capsize=3)
    texts = []
    for i, (mean, std, speedup) in enumerate(zip(means, stds, groups["speedup"], strict=True)):
        if math.isfinite(mean):
            text = f"{mean:.3g} s" + (f"  {speedup:.2f}×" if math.isfinite(speedup) else "")
            texts.append(
                time_ax.annotate(
                    text, (mean + std, i), xytext=(4, 0), textcoords="offset points", va="center"
                )
            )
    time_ax.set_yticks(y, [wrap_label(label, TICK_CHARS) for label in labels])
    time_ax.invert_yaxis()
    time_ax.set_xlim(0, max(float(np.nanmax(means + stds)), 1e-9) * 1.05)
    time_ax.set_xlabel("seconds per epoch (median of epochs 2..N)")
    time_ax.grid(axis="x", alpha=0.3)
    height = 0.38
    for column, offset, alpha, hatch in (
        ("nfe_forward_mean", -height / 2, 0.45, "//"),
        ("nfe_backward_mean", height / 2, 0.9, None),
    ):
        values = np.nan_to_num(groups[column].to_numpy(dtype=float))
        nfe_ax.barh(y + offset, values, height=height, color=colours, alpha=alpha, hatch=hatch)
    nfe_ax.tick_params(labelleft=False)
    nfe_ax.set_xlabel("NFE per epoch: forward (hatched), backward (solid)")
    nfe_ax.grid(axis="x", alpha=0.3)
    _fit_texts(fig, time_ax, texts)


def _tradeoff_panel(
    ax: Axes,
    groups: pd.DataFrame,
    styles: dict[str, Style],
    y_column: str,
    y_label: str,
    scale: float,
    higher_is_better: bool,
) -> None:
    """Epoch time against Y_COLUMN, one point per group (± std), Pareto front dashed."""
    if f"{y_column}_mean" not in groups or groups[f"{y_column}_mean"].isna().all():
        ax.text(0.5, 0.5, f"{y_label}: not recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    xs = groups["epoch_time_s_mean"].to_numpy(dtype=float)
    ys = groups[f"{y_column}_mean"].to_numpy(dtype=float) / scale
    xerr = np.nan_to_num(groups["epoch_time_s_std"].to_numpy(dtype=float))
    yerr = np.nan_to_num(groups[f"{y_column}_std"].to_numpy(dtype=float) / scale)
    for i, label in enumerate(groups["group"]):
        style = styles[label]
        ax.errorbar(
            xs[i], ys[i], xerr=xerr[i], yerr=yerr[i], color=style.colour, marker=style.marker,
            markersize=7, capsize=2, linestyle="none",
        )  # fmt: skip
    front = _pareto(xs, ys, higher_is_better)
    if len(front) > 1:
        ax.plot(xs[front], ys[front], linestyle="--", color="grey", linewidth=1, zorder=0)
    ax.set_xlabel("seconds per epoch")
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)


# Characters of a panel title (font size + 1) that fit in one inch of figure width.
TITLE_CHARS_PER_INCH = 10


def build_figure(df: pd.DataFrame, summary: Summary, facet: str | None = None) -> Figure | None:
    """The figure for SUMMARY's groups with at least one averaged run; None when there is
    none (nothing honest to draw). FACET, a grouping key, splits the accuracy panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = summary.groups[summary.groups["runs"] > 0].reset_index(drop=True)
    if groups.empty:
        return None
    labels = list(groups["group"])
    n = len(labels)
    styles = _styles(labels)
    curves = _curves(df, summary)
    facet_values: list[Any] = [None]
    facet_name = column = ""
    if facet:  # a grouping key: summary.groups has a column of its values
        facet_name, column = key_names(summary.by)[summary.by.index(facet)], short_name(facet)
        facet_values = list(dict.fromkeys(groups[column]))
    font = 10 if n <= 8 else 9 if n <= 16 else 8
    # The legend: columns as many as the labels allow in ~150 characters of width;
    # notes (coinciding curves, mixed groups) wrapped to a column's width.
    longest = min(max(len(label) for label in labels) + len(" (mixed!)"), LEGEND_CHARS - 6)
    legend_cols = max(1, min(n, 4, LEGEND_CHARS // (longest + 6)))
    column_chars = max(longest, LEGEND_CHARS // legend_cols - 6)

    def lines(text: str, chars: int) -> int:
        return wrap_label(text, chars).count("\n") + 1

    legend_lines = sum(lines(label + " (mixed!)", column_chars) for label in labels)
    legend_rows = math.ceil(legend_lines / legend_cols) + 4
    bar_height = max(2.4, 0.24 * sum(lines(label, TICK_CHARS) for label in labels) + 1.0)
    facet_cols = min(len(facet_values), FACET_COLS)
    facet_rows = math.ceil(len(facet_values) / facet_cols)
    acc_height = 3.6 * facet_rows
    width = 13.0
    height = acc_height + bar_height + 3.4 + 0.22 * (legend_rows + 3) + 0.8
    with plt.rc_context({"font.size": font, "axes.titlesize": font + 1, **LITERAL_TEXT}):
        fig = plt.figure(figsize=(width, height), layout="constrained")
        rows = fig.add_gridspec(3, 1, height_ratios=[acc_height, bar_height, 3.4])
        acc_grid = rows[0].subgridspec(facet_rows, facet_cols)
        # Side-by-side facet panels share the width: wrap each title to its panel's share
        # (~10 title characters per inch at this size), or neighbouring titles overlap.
        title_chars = max(12, int(TITLE_CHARS_PER_INCH * width / facet_cols) - 4)
        clusters: list[tuple[Any, list[str]]] = []
        for i, value in enumerate(facet_values):
            ax = fig.add_subplot(acc_grid[i // facet_cols, i % facet_cols])
            mine = labels if value is None else list(groups.loc[groups[column] == value, "group"])
            found = _accuracy_panel(ax, curves, mine, styles)
            clusters += [(value, c) for c in found]
            title = "Test accuracy per epoch (mean ± std)"
            if value is not None:
                title = f"{facet_name} = {value}: test accuracy per epoch"
            if found:
                same = sum(len(c) for c in found)
                sets = f" in {len(found)} sets" if len(found) > 1 else ""
                title += f"; {same} of {len(mine)} groups coincide{sets} (black)"
            ax.set_title(textwrap.fill(title, title_chars))
        bar_grid = rows[1].subgridspec(1, 2, width_ratios=[3, 2])
        time_ax = fig.add_subplot(bar_grid[0, 0])
        nfe_ax = fig.add_subplot(bar_grid[0, 1], sharey=time_ax)
        time_ax.set_title("Epoch time per group (value, speed-up)")
        nfe_ax.set_title("Vector-field evaluations per epoch")
        time_ax.set_ylabel(summary.header)
        trade_grid = rows[2].subgridspec(1, 2)
        mem_ax, acc_ax = fig.add_subplot(trade_grid[0, 0]), fig.add_subplot(trade_grid[0, 1])
        mem_ax.set_title("Time vs held memory (lower left is better)")
        acc_ax.set_title("Time vs final test accuracy (upper left is better)")
        unit, scale = memory_unit(summary, "hold_memory_bytes")  # the table's unit
        _tradeoff_panel(
            mem_ax, groups, styles, "hold_memory_bytes", f"held memory ({unit})", scale, False
        )
        _tradeoff_panel(
            acc_ax, groups, styles, "final_test_acc", "final test accuracy (%)", 1.0, True
        )
        mixed = summary.mixed
        handles = [
            Line2D(
                [], [], color=styles[g].colour, marker=styles[g].marker,
                label=wrap_label(g + (" (mixed!)" if g in mixed else ""), column_chars),
            )
            for g in labels
        ]  # fmt: skip
        shared: dict[Any, int] = {}
        for value, cluster in clusters:
            dash, marker = CLUSTER_STYLES[shared.get(value, 0) % len(CLUSTER_STYLES)]
            shared[value] = shared.get(value, 0) + 1
            where = "" if value is None else f" ({facet_name} = {value})"
            text = f"identical accuracy curves{where}, drawn once: " + ", ".join(cluster)
            handles.append(
                Line2D([], [], linestyle=dash, color="black", marker=marker,
                       label=textwrap.fill(text, column_chars))
            )  # fmt: skip
        if mixed:
            handles.append(
                Line2D([], [], linestyle="none", label=textwrap.fill(
                    "mixed!: the group averages runs that differ in a key it hides "
                    "(the report lists which)", column_chars))
            )  # fmt: skip
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=legend_cols,
            title=(f"groups ({summary.header})" if summary.by else "all runs form one group")
            + "; dashed: Pareto front",
            frameon=False,
        )
        fig.suptitle(
            f"nodecli report: {int(groups['runs'].sum())} run(s) in {n} "
            f"{'group' if n == 1 else 'groups'}, "
            f"mean ± std over runs"
        )
        _time_panels(fig, time_ax, nfe_ax, groups, styles)
    return fig


def plot(
    df: pd.DataFrame,
    summary: Summary,
    path: Path,
    facet: str | None = None,
    figure: Figure | None = None,
) -> bool:
    """Write the figure to PATH (format from its suffix): FIGURE when given (e.g. the
    `--x` figure of nodecli.report.scaling), else the per-group figure. False when there
    was nothing to draw (no group with a completed run that finished an epoch).

    Rendered in memory and written atomically: a full disk or a kill never leaves a
    half-written figure in place of the user's earlier one."""
    import io

    import matplotlib.pyplot as plt

    fig = figure if figure is not None else build_figure(df, summary, facet)
    if fig is None:
        return False
    buffer = io.BytesIO()
    with plt.rc_context(LITERAL_TEXT):  # tick labels may be made while drawing
        fig.savefig(buffer, format=path.suffix.lower().lstrip("."), dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True
