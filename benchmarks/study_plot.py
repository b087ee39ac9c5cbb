"""docs/study.md's scaling figure: held memory, peak memory and epoch time of each
sensealg against the field's width, one line per horizon t1, drawn from the CSV of
`nodecli report --by sensealg,model.hidden,model.t1 --format csv` (read from stdin).

`nodecli report --plot` draws one point per group; this draws each method as lines over
the swept keys, on log axes, which is the shape of the trade-off.

    nodecli report outputs/study/mlp --by sensealg,model.hidden,model.t1 --format csv \
      | python benchmarks/study_plot.py docs/study-scaling.png "model=mlp, ..."
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

METHODS = ("direct", "adjoint", "checkpoint", "interpolating", "gauss")
COLOURS = dict(zip(METHODS, ("C3", "C0", "C2", "C1", "C4"), strict=True))
PANELS = (
    ("hold_memory_bytes_mean", "held for backward (MiB)", 2.0**-20),
    ("peak_memory_bytes_mean", "peak of the step (MiB)", 2.0**-20),
    ("epoch_time_s_mean", "epoch time (s)", 1.0),
)


def main(out: str, title: str) -> None:
    df = pd.read_csv(sys.stdin)
    horizons = sorted(df["model.t1"].unique())
    styles = dict(zip(horizons, ("-", "--", ":", "-."), strict=False))
    markers = dict(zip(horizons, ("o", "s", "^", "D"), strict=False))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
    for ax, (column, label, scale) in zip(axes, PANELS, strict=True):
        for i, method in enumerate(METHODS):
            for t1 in horizons:
                rows = df[(df["sensealg"] == method) & (df["model.t1"] == t1)]
                rows = rows.sort_values("model.hidden")
                if rows.empty:
                    continue
                ax.plot(
                    rows["model.hidden"],
                    rows[column] * scale,
                    styles[t1],
                    marker=markers[t1],
                    color=COLOURS[method],
                    linewidth=1.2 + 0.7 * (len(METHODS) - 1 - i),  # equal values stay visible
                    markersize=4 + 1.2 * (len(METHODS) - 1 - i),
                    alpha=0.85,
                    label=f"{method}, t1={t1:g}",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(df["model.hidden"].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("model.hidden")
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(METHODS), fontsize=8)
    fig.suptitle(title)
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
