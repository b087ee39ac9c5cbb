"""The report's figure (matplotlib, Agg backend): accuracy per epoch and epoch time.

Imports nodecli.summary, grouping and render_table (the one-line description).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from nodecli.grouping import group_label, short_name
from nodecli.render_table import describe
from nodecli.summary import Summary


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
