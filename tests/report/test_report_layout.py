"""`nodecli report` for 1 to 30 groups on records written here: grouping by the keys that
really vary, whole labels in every text format and width, honest aggregation, and a
figure whose text never overlaps or leaves the figure."""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodecli import cli
from nodecli.report import table as tables
from nodecli.report.aggregate import NO_EPOCH, load_runs, summarize
from nodecli.report.plot import build_figure, plot
from nodecli.report.table import latex_escape

SENSEALGS = ("direct", "adjoint", "checkpoint", "interpolating", "gauss")
# Per-method options exist only for the methods that use them (as in conf/sensealg).
SENSEALG_OPTIONS: dict[str, dict[str, Any]] = {
    "adjoint": {"seminorm": False},
    "interpolating": {"seminorm": False, "checkpointing": False},
    "gauss": {"checkpointing": True},
}
STEP_SIZE = {"tsit5": None, "dopri5": None, "bosh3": None, "rk4": 0.1}
# number of groups -> (solvers, layer styles, sensealgs) whose product makes them
SHAPES = {
    1: (("tsit5",), ("module",), ("direct",)),
    5: (("tsit5",), ("module",), SENSEALGS),
    12: (("tsit5", "dopri5", "rk4"), ("module", "functional"), ("direct", "gauss")),
    30: (("tsit5", "dopri5", "rk4"), ("module", "functional"), SENSEALGS),
}
METRIC_HEADERS = ("first epoch (s)", "epoch time (s)", "final test acc (%)", "NFE bwd/epoch")


def write_run(
    root: Path,
    name: str,
    *,
    solver: str = "tsit5",
    sensealg: str = "direct",
    layer_style: str = "module",
    seed: int = 0,
    epochs: int = 4,
    status: str = "completed",
    finished: int | None = None,
    speed: float = 1.0,
    acc_shift: float = 0.0,
    overrides: list[str] | None = None,
    step_size: float | None = None,
) -> Path:
    """One run record as `nodecli train` writes it (run.json, metrics.csv, config)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "resume": None,
        "solver": {"method": solver, "rtol": 0.001, "step_size": STEP_SIZE[solver]},
        "sensealg": {"name": sensealg, **SENSEALG_OPTIONS.get(sensealg, {})},
        "layer_style": {"name": layer_style},
        "train": {"epochs": epochs, "lr": 0.001},
    }
    if step_size is not None:
        config["solver"]["step_size"] = step_size
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    lines = ["epoch,train_time_s,train_loss,train_acc,test_acc,nfe_forward,nfe_backward,"
             "hold_memory_bytes,peak_memory_bytes"]  # fmt: skip
    for epoch in range(1, (epochs if finished is None else finished) + 1):
        acc = 40 + 40 * (1 - 0.6**epoch) + acc_shift + seed
        time_s = speed * (0.05 + 0.01 * seed) * (2.0 if epoch == 1 else 1.0)
        lines.append(
            f"{epoch},{time_s},{1 / epoch},{acc - 3},{acc},154,{143 * speed:.0f},"
            f"{int(40000 * speed)},{int(480000 * speed)}"
        )
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    default = [f"solver={solver}", f"sensealg={sensealg}", f"layer_style={layer_style}"]
    info = {
        "status": status,
        "error": "SolverError: step size underflow" if status == "failed" else None,
        "started_at": "2026-11-23T06:00:00.000+00:00",
        "ended_at": "2026-11-23T06:01:00.000+00:00",
        "heartbeat_at": "2026-11-23T06:01:00.000+00:00",
        "device": "cpu",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "overrides": [*(default if overrides is None else overrides), f"seed={seed}"],
    }
    (run / "run.json").write_text(json.dumps(info))
    return run


def write_groups(root: Path, n: int) -> list[tuple[str, str, str]]:
    """Records for N groups (2 seeds each), every group with its own speed and accuracy."""
    combos = list(itertools.product(*SHAPES[n]))
    for i, (solver, layer, sensealg) in enumerate(combos):
        for seed in (0, 1):
            write_run(
                root, f"{i}-{seed}", solver=solver, layer_style=layer, sensealg=sensealg,
                seed=seed, speed=1 + 0.13 * i, acc_shift=0.5 * i,
            )  # fmt: skip
    return combos


def report(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def expected_labels(n: int, combos: list[tuple[str, str, str]]) -> list[str]:
    """The labels the grouping must produce: the varying parts in config order (solver,
    sensealg, layer_style)."""
    combos = [(solver, sensealg, layer) for solver, layer, sensealg in combos]
    varying = [len(set(values)) > 1 for values in zip(*combos, strict=True)]
    if not any(varying):
        return ["all runs"]
    return [" · ".join(v for v, keep in zip(c, varying, strict=True) if keep) for c in combos]


@dataclass
class Study:
    """write_groups(ROOT, N)'s records, read and summarised (left as written: tests
    that add or damage a record write their own)."""

    root: Path
    labels: list[str]
    df: Any
    summary: Any


@pytest.fixture(scope="module")
def groups_of(tmp_path_factory) -> Callable[[int], Study]:
    """N -> the Study of N groups, written, loaded and summarised once per module (the
    tests that only read them share it)."""
    studies: dict[int, Study] = {}

    def get(n: int) -> Study:
        if n not in studies:
            root = tmp_path_factory.mktemp(f"groups{n}")
            combos = write_groups(root, n)
            df = load_runs([root])
            studies[n] = Study(root, expected_labels(n, combos), df, summarize(df))
        return studies[n]

    return get


def test_five_sensealgs_group_by_sensealg_alone_with_a_speedup_each(groups_of) -> None:
    summary = groups_of(5).summary
    assert summary.by == ["sensealg.name"]
    # checkpointing and seminorm exist for some methods only: decided by sensealg.
    assert set(summary.determined) == {"sensealg.checkpointing", "sensealg.seminorm"}
    assert sorted(summary.groups["group"]) == sorted(SENSEALGS)
    assert summary.header == "sensealg"
    speedups = summary.groups.set_index("group")["speedup"]
    times = summary.groups.set_index("group")["epoch_time_s_mean"]
    for sensealg in SENSEALGS:
        assert speedups[sensealg] == pytest.approx(times["direct"] / times[sensealg])


def test_a_determined_key_the_user_set_still_groups(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(tmp_path, f"rk4-{seed}", solver="rk4", seed=seed)
        write_run(
            tmp_path, f"rk4-fine-{seed}", solver="rk4", seed=seed, step_size=0.05,
            overrides=["solver=rk4", "solver.step_size=0.05"],
        )  # fmt: skip
        write_run(tmp_path, f"tsit5-{seed}", solver="tsit5", seed=seed)
    summary = summarize(load_runs([tmp_path]))
    assert summary.by == ["solver.method", "solver.step_size"]
    assert sorted(summary.groups["group"]) == ["rk4 · 0.05", "rk4 · 0.1", "tsit5 · null"]
    assert summary.header == "solver · step_size"


@pytest.mark.parametrize("n", sorted(SHAPES))
@pytest.mark.parametrize("columns", ["80", "100", "200", None])
def test_rich_table_keeps_every_label_whole(
    groups_of, capsys, monkeypatch, n: int, columns: str | None
) -> None:
    # The table `nodecli report` prints (render_rich of its summary), from the study read
    # once per N; the command's own path is run by the tests below.
    study = groups_of(n)
    if columns is None:  # a pipe: no terminal, no COLUMNS
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    tables.render_rich(study.summary)
    out, err = capsys.readouterr()
    assert err == ""
    width = int(columns or 200)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in out  # rich's mark of a cut cell
    table_rows = [line for line in lines if line.startswith("│")]
    for label in study.labels:
        cell = f"│ {label} "
        rows = [line for line in table_rows if line.startswith(cell)]
        assert rows, (label, out)
    for header in METRIC_HEADERS:
        assert header in out
    # The default baseline (sensealg=direct) exists once sensealg varies.
    assert ("speed-up" in out) == (len(SHAPES[n][2]) > 1)


@pytest.mark.parametrize("n", sorted(SHAPES))
def test_other_formats_carry_the_full_labels(groups_of, n: int) -> None:
    study = groups_of(n)
    labels = study.labels
    outputs = {  # what `nodecli report --format FMT` writes
        "markdown": tables.render_markdown(study.summary),
        "csv": tables.render_csv(study.summary),
        "json": tables.render_json(study.summary),
        "latex": tables.render_latex(study.summary),
    }
    for label in labels:
        assert f"| {label} |" in outputs["markdown"]
        assert f"\n{label}," in outputs["csv"] or f'\n"{label}",' in outputs["csv"]
        assert f"{latex_escape(label)} & " in outputs["latex"]
    assert sorted(g["group"] for g in json.loads(outputs["json"])["groups"]) == sorted(labels)


def test_mixed_groups_are_flagged_and_empty_runs_left_out_of_n(tmp_path: Path, capsys) -> None:
    for i, epochs in enumerate((2, 5, 9)):
        for solver in ("tsit5", "dopri5"):
            overrides = [f"solver={solver}", f"train.epochs={epochs}"]
            write_run(tmp_path, f"{solver}-{epochs}", solver=solver, epochs=epochs, seed=i,
                      overrides=overrides)  # fmt: skip
    write_run(tmp_path, "empty", solver="tsit5", epochs=9, finished=0)
    write_run(tmp_path, "failed", solver="tsit5", epochs=9, finished=1, status="failed")
    summary = summarize(load_runs([tmp_path]), by=["solver"])
    groups = summary.groups.set_index("group")
    assert groups.loc["tsit5", "runs"] == 3 and groups.loc["tsit5", "incomplete"] == 2
    assert (groups.loc["tsit5", "epochs_min"], groups.loc["tsit5", "epochs"]) == (2, 9)
    assert groups.loc["tsit5", "mixed"] == "train.epochs (2, 5, 9)"
    left_out = summary.incomplete.set_index("run_dir")
    assert left_out.loc[str(tmp_path / "empty"), "error"] == NO_EPOCH
    code, out, err = report(capsys, str(tmp_path), "--by", "solver", "--format", "markdown")
    assert code == 0, err
    assert "| tsit5 | 3 (+2) mixed! | 2–9 |" in out
    assert "group 'tsit5' averages runs that differ in train.epochs (2, 5, 9)" in out
    # Grouped by default, the epoch count is a grouping key and nothing is mixed.
    assert summarize(load_runs([tmp_path])).mixed == {}


def test_speedup_against_pooled_baseline_when_no_group_shares_the_other_keys(
    tmp_path: Path,
) -> None:
    write_run(tmp_path, "direct-tsit5", solver="tsit5", sensealg="direct")
    write_run(tmp_path, "gauss-tsit5", solver="tsit5", sensealg="gauss", speed=2.0)
    write_run(tmp_path, "gauss-dopri5", solver="dopri5", sensealg="gauss", speed=4.0)
    summary = summarize(load_runs([tmp_path]))
    groups = summary.groups.set_index("group")
    base = groups.loc["tsit5 · direct", "epoch_time_s_mean"]
    assert groups.loc["tsit5 · gauss", "speedup"] == pytest.approx(0.5)
    assert groups.loc["tsit5 · gauss", "speedup_note"] == ""
    pooled = groups.loc["dopri5 · gauss"]
    assert pooled["speedup"] == pytest.approx(base / pooled["epoch_time_s_mean"])
    assert pooled["speedup_note"] == "vs all sensealg=direct runs"


def drawn_text_boxes(fig) -> list[tuple[str, Any]]:
    """(text, window extent) of every non-empty text matplotlib actually draws."""
    from matplotlib.text import Text

    drawn: list[tuple[str, Any]] = []
    original = Text.draw

    def record(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append((self.get_text(), self.get_window_extent(renderer)))

    Text.draw = record
    try:  # the draw that lays out and measures every artist, minus the rasterising
        fig.draw_without_rendering()
    finally:
        Text.draw = original
    return drawn


def assert_text_readable(fig, at_least: int = 1) -> None:
    """Every drawn text inside the figure, and no two overlapping (1 px tolerance)."""
    boxes = drawn_text_boxes(fig)
    assert len(boxes) >= at_least  # the recording saw the figure's texts
    frame = fig.bbox
    for text, box in boxes:
        inside = box.x0 >= frame.x0 - 1 and box.x1 <= frame.x1 + 1
        assert inside and box.y0 >= frame.y0 - 1 and box.y1 <= frame.y1 + 1, text
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        dx = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        dy = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert dx <= 1 or dy <= 1, f"{a!r} overlaps {b!r}"


@pytest.mark.parametrize("n", sorted(SHAPES))
def test_figure_text_never_overlaps_nor_leaves_the_figure(groups_of, n: int) -> None:
    # Every band of font size (10 up to 8 groups, 9 up to 16, 8 above) and of colours
    # (tab10, tab20, tab20 with a second marker) is drawn.
    import matplotlib.pyplot as plt

    study = groups_of(n)
    fig = build_figure(study.df, study.summary)
    try:
        assert_text_readable(fig, at_least=20 + 2 * n)  # titles, ticks, a legend entry each
        texts = {t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))}
        for label in study.labels:
            assert label in texts  # a y tick label and a legend entry
    finally:
        plt.close(fig)


def test_facet_gives_one_accuracy_panel_per_value(groups_of, tmp_path: Path, capsys) -> None:
    import matplotlib.pyplot as plt

    study = groups_of(12)
    fig = build_figure(study.df, study.summary, facet="solver.method")
    try:
        titles = [ax.get_title() for ax in fig.axes]
        for solver in SHAPES[12][0]:
            assert sum(t.startswith(f"solver = {solver}: ") for t in titles) == 1
        assert_text_readable(fig)
    finally:
        plt.close(fig)
    # The command resolves `solver` and groups by it too (one group: one panel).
    target = tmp_path / "facet.svg"
    code, _, err = report(capsys, str(groups_of(1).root), "--facet", "solver", "--plot",
                          str(target))  # fmt: skip
    assert code == 0, err
    assert target.read_text().lstrip().startswith("<?xml")


def test_many_facet_panels_keep_their_titles_apart(groups_of) -> None:
    # With 5 panels "sensealg = interpolating: test accuracy per epoch; …" overlapped its
    # neighbours' titles and left the figure. One group a panel draws the titles in the
    # largest font (more groups shrink it; their bars and legend are the unfaceted
    # figure's, checked above for 30 groups).
    import matplotlib.pyplot as plt

    study = groups_of(5)
    fig = build_figure(study.df, study.summary, facet="sensealg.name")
    try:
        assert_text_readable(fig)
    finally:
        plt.close(fig)


def test_fifteen_facet_values_wrap_onto_rows_in_numeric_order(tmp_path: Path) -> None:
    """15 seed panels in one row overlapped each other's titles and ran off the figure,
    ordered 0, 1, 10, 11, … 2."""
    import matplotlib.pyplot as plt

    for seed in range(15):  # one group a panel: the panels and their titles are the point
        write_run(tmp_path, f"direct-{seed}", seed=seed)
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df, ["sensealg.name", "seed"]), facet="seed")
    try:
        assert_text_readable(fig)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("seed = ")]
        assert [int(t.split()[2].rstrip(":")) for t in titles] == list(range(15))
    finally:
        plt.close(fig)


def test_labels_longer_than_a_line_wrap_in_the_figure(tmp_path: Path) -> None:
    """A 130-character label squeezed the bar panels to nothing and ran off both edges."""
    import matplotlib.pyplot as plt

    path = "/very/long/path/" + "".join(f"segment{i:02d}/" for i in range(12))
    for i in range(3):
        run = write_run(tmp_path, f"r{i}")
        with open(run / ".hydra" / "config.yaml", "a") as fh:
            fh.write(f"dataset:\n  root: {path}data{i}\n")
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df))
    try:
        assert_text_readable(fig)
    finally:
        plt.close(fig)


def test_a_one_epoch_figure_ticks_only_epoch_1(tmp_path: Path) -> None:
    # One-epoch runs got epoch ticks 0.96 and 1.04.
    import matplotlib.pyplot as plt

    write_run(tmp_path, "one", epochs=1)
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df))
    try:
        fig.draw_without_rendering()  # ticks are made by a draw
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1"]
    finally:
        plt.close(fig)


def test_coinciding_curves_are_drawn_once_and_named(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    for sensealg in ("direct", "adjoint", "checkpoint"):
        write_run(tmp_path, sensealg, sensealg=sensealg)  # identical accuracy curves
    write_run(tmp_path, "gauss", sensealg="gauss", acc_shift=3.0)
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df))
    try:
        accuracy = fig.axes[0]
        assert len(accuracy.get_lines()) == 2  # one black line for three groups, gauss
        assert "3 of 4 groups coincide" in accuracy.get_title()
        legend = " ".join(" ".join(t.get_text().split()) for t in fig.legends[0].get_texts())
        assert "identical accuracy curves, drawn once: direct, adjoint, checkpoint" in legend
    finally:
        plt.close(fig)


def test_plot_with_nothing_to_draw_writes_nothing(tmp_path: Path, capsys) -> None:
    write_groups(tmp_path, 5)
    write_run(tmp_path, "failed", sensealg="gauss", finished=1, status="failed")
    target = tmp_path / "r.png"
    code, out, err = report(capsys, str(tmp_path), "--where", "status=failed", "--plot",
                            str(target))  # fmt: skip
    assert code == 1 and not target.exists()
    assert "no completed run with a finished epoch; not written" in err
    assert "SolverError: step size underflow" in out


def test_epochs_view_in_the_reference_units(groups_of, capsys, monkeypatch) -> None:
    study = groups_of(5)
    df = study.df
    gauss = df[df["sensealg.name"] == "gauss"]
    first = gauss[gauss["epoch"] == 1]
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = report(capsys, str(study.root), "--epochs")
    assert code == 0, err
    assert "sensealg: gauss" in out and "Training Accuracy (%)" in out and "…" not in out
    line = next(line for line in out.splitlines() if "sensealg: gauss" in line)
    block = out[out.index(line) :]
    row = next(r for r in block.splitlines() if r.startswith("│ [1/4]"))
    assert f"{first['test_acc'].mean():.5f} ± {first['test_acc'].std():.5f}" in row
    assert f"{first['train_time_s'].mean():.4f}" in row
    code, out, err = report(capsys, str(study.root), "--epochs", "--format", "csv")
    assert code == 0 and out.count("\n") == 1 + 5 * 4  # header + groups × epochs


def test_the_overlap_check_catches_overlap_and_clipping() -> None:
    """The checker above fails on what it must catch: two labels on top of each other, and
    a label hanging out of the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 3))
    fig.text(0.2, 0.5, "first label")
    fig.text(0.3, 0.51, "second label")
    with pytest.raises(AssertionError, match="overlaps"):
        assert_text_readable(fig)
    plt.close(fig)
    fig = plt.figure(figsize=(4, 3))
    fig.text(0.9, 0.5, "this text runs past the right edge")
    with pytest.raises(AssertionError, match="past the right edge"):
        assert_text_readable(fig)
    plt.close(fig)


def test_a_label_wider_than_the_terminal_wraps_whole(groups_of, capsys, monkeypatch) -> None:
    study = groups_of(12)
    monkeypatch.setenv("COLUMNS", "40")  # narrower than label + one figure
    code, out, err = report(capsys, str(study.root))
    assert code == 0, err
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 40
    first_table = out.split("nodecli report (2/")[0]
    cells = [line.split("│")[1].strip() for line in first_table.splitlines() if line[:1] == "│"]
    text = " ".join(cells)
    for label in study.labels:
        assert label in text


@pytest.mark.parametrize("columns", ["1", "20", "39"])
def test_a_very_narrow_terminal_gets_the_minimum_width(
    groups_of, capsys, monkeypatch, columns: str
) -> None:
    """Below MIN_WIDTH every cell would wrap a character or two per line (or be cut)."""
    from nodecli.report.table import MIN_WIDTH

    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = report(capsys, str(groups_of(5).root))
    assert code == 0, err
    lines = out.splitlines()
    assert "…" not in out and max(len(line) for line in lines) <= MIN_WIDTH == 40
    assert "│ gauss " in out  # a whole label on its line


@pytest.mark.parametrize("args", [[], ["--epochs"]])
def test_report_lines_have_no_trailing_spaces(
    groups_of, capsys, monkeypatch, args: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = report(capsys, str(groups_of(5).root), *args)
    assert code == 0, err
    assert "nodecli report (1/" in out or args
    assert [line for line in out.splitlines() if line != line.rstrip()] == []


@pytest.mark.slow
def test_a_closed_pipe_ends_the_report_quietly(groups_of, monkeypatch) -> None:
    """`nodecli report | head -2`: no message, no traceback, exit 141 (128 + SIGPIPE) as
    for a tool that SIGPIPE ends (git log | head)."""
    import os
    import subprocess
    import sys

    root = groups_of(5).root
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the report writes
    monkeypatch.setenv("COLUMNS", "80")
    result = subprocess.run(
        [sys.executable, "-m", "nodecli.cli", "report", str(root)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    os.close(write)
    assert result.returncode == 141 and result.stderr == ""


def test_several_sets_of_coinciding_curves_are_counted_as_sets(tmp_path: Path) -> None:
    """'4 of 4 groups coincide' read as one curve when there were two."""
    import matplotlib.pyplot as plt

    for sensealg, shift in (("direct", 0.0), ("adjoint", 0.0), ("gauss", 3.0), ("checkpoint", 3.0)):
        write_run(tmp_path, sensealg, sensealg=sensealg, acc_shift=shift)
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df))
    try:
        title = " ".join(fig.axes[0].get_title().split())
        assert "4 of 4 groups coincide in 2 sets" in title
    finally:
        plt.close(fig)


def test_dollar_signs_in_labels_are_drawn_as_typed(tmp_path: Path) -> None:
    """`$\\nosuchcmd{$` ended --plot in matplotlib's mathtext traceback; `$a_b$` lost its
    dollars to maths typesetting."""
    labels = ["$a_b$", "$\\nosuchcmd{$"]
    for i, label in enumerate(labels):
        run = write_run(tmp_path / "runs", f"r{i}")
        with open(run / ".hydra" / "config.yaml", "a") as fh:
            fh.write(yaml.safe_dump({"dataset": {"root": label}}))
    df = load_runs([tmp_path / "runs"])
    summary = summarize(df)
    fig = build_figure(df, summary)
    fig.draw_without_rendering()  # ticks are made by a draw
    ticks = [t for t in fig.axes[1].get_yticklabels() if t.get_text()]
    assert sorted(t.get_text() for t in ticks) == sorted(labels)
    assert not any(t.get_parse_math() for t in ticks)
    target = tmp_path / "r.png"  # rendered and written as `--plot r.png` does it
    assert plot(df, summary, target, figure=fig) and target.stat().st_size > 0


def test_a_failed_plot_write_keeps_the_earlier_figure(
    groups_of, tmp_path: Path, capsys, monkeypatch
) -> None:
    """savefig wrote straight onto the target: a full disk left a cut-off PNG in place of
    the user's earlier figure, and the error named no file."""
    import errno

    from matplotlib.figure import Figure

    runs = groups_of(1).root  # any figure: the write is what fails
    target = tmp_path / "r.png"
    target.write_bytes(b"the earlier figure")

    def savefig_on_a_full_disk(self, fname, **kwargs) -> None:
        if isinstance(fname, (str, Path)):
            Path(fname).write_bytes(b"\x89PNG cut off")
        else:
            fname.write(b"\x89PNG cut off")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", savefig_on_a_full_disk)
    code, _, err = report(capsys, str(runs), "--plot", str(target))
    assert code == 2 and "No space left" in err
    assert target.read_bytes() == b"the earlier figure"
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]  # no temporary file left


def test_values_that_print_alike_stay_apart(tmp_path: Path) -> None:
    """null and the string 'null' were one group of 2 runs (groups were formed by label)."""
    for name, root in (("none", None), ("text", "null"), ("text2", "null")):
        run = write_run(tmp_path, name)
        with open(run / ".hydra" / "config.yaml", "a") as fh:
            fh.write(yaml.safe_dump({"dataset": {"root": root}}))
    summary = summarize(load_runs([tmp_path]))
    groups = dict(zip(summary.groups["group"], summary.groups["runs"], strict=True))
    assert groups == {"null": 1, "'null'": 2}


def test_a_key_a_run_lacks_reads_unset_everywhere(tmp_path: Path, capsys) -> None:
    """The label said `unset`, the CSV key column `null`, and --where key=unset matched
    nothing."""
    write_run(tmp_path, "direct")
    write_run(tmp_path, "adjoint", sensealg="adjoint")  # has sensealg.seminorm
    code, out, _ = report(capsys, str(tmp_path), "--by", "sensealg.seminorm", "--format",
                          "csv")  # fmt: skip
    assert code == 0 and "\nunset,unset," in out
    code, out, _ = report(capsys, str(tmp_path), "--where", "sensealg.seminorm=unset",
                          "--format", "csv")  # fmt: skip
    assert code == 0 and out.count("\n") == 2  # header and the direct run's group


def test_epochs_view_says_mixed_groups_and_kept_out_runs(tmp_path: Path, capsys) -> None:
    """--epochs averaged runs of 3 and 4 epochs with no word, and said nothing of the
    runs it left out."""
    write_run(tmp_path, "a4", sensealg="adjoint", epochs=4)
    write_run(tmp_path, "a3", sensealg="adjoint", epochs=3)
    write_run(tmp_path, "d", sensealg="direct")
    write_run(tmp_path, "g-failed", sensealg="gauss", finished=1, status="failed")
    for fmt in ("rich", "markdown", "latex"):
        code, out, _ = report(capsys, str(tmp_path), "--by", "sensealg", "--epochs",
                              "--format", fmt)  # fmt: skip
        flat = " ".join(out.split())
        assert code == 0 and "adjoint (mixed!)" in flat, fmt
        assert "mixed! group 'adjoint' averages runs that differ in" in flat, fmt
        # The path may wrap anywhere at the terminal's width: look for it without spaces.
        assert "failed run kept out of the means:" in flat, fmt
        assert "g-failed" in "".join(out.split()), fmt
    code, out, _ = report(capsys, str(tmp_path), "--by", "sensealg", "--epochs", "--format",
                          "json")  # fmt: skip
    data = json.loads(out)
    assert list(data["mixed"]) == ["adjoint"] and len(data["incomplete"]) == 1
    code, out, err = report(capsys, str(tmp_path), "--by", "sensealg", "--epochs", "--format",
                            "csv")  # fmt: skip
    assert code == 0 and "mixed! group 'adjoint'" in err and "g-failed" in err


def test_a_newline_in_a_label_stays_inside_latex_comments(tmp_path: Path, capsys) -> None:
    for name, hidden in (("a", 10), ("b", 12)):
        run = write_run(tmp_path, name)
        with open(run / ".hydra" / "config.yaml", "a") as fh:
            fh.write(yaml.safe_dump({"dataset": {"root": "line1\nline2"}, "hidden": hidden}))
    write_run(tmp_path, "c")
    for extra in ([], ["--epochs"]):
        code, out, _ = report(capsys, str(tmp_path), "--by", "dataset.root", "--format",
                              "latex", *extra)  # fmt: skip
        assert code == 0
        for line in out.splitlines():  # every line: a comment, or LaTeX (never prose)
            assert line.startswith(("%", "\\", "{", "[")) or " & " in line or not line, line


def test_markdown_prints_config_values_as_typed(tmp_path: Path, capsys) -> None:
    for name, root in (("em", "*em*"), ("html", "<b>t</b>"), ("code", "`c`"), ("bs", "a\\b")):
        run = write_run(tmp_path, name)
        with open(run / ".hydra" / "config.yaml", "a") as fh:
            fh.write(yaml.safe_dump({"dataset": {"root": root}}))
    code, out, _ = report(capsys, str(tmp_path), "--format", "markdown")
    assert code == 0
    for escaped in ("\\*em\\*", "\\<b\\>t\\</b\\>", "\\`c\\`", "a\\\\b"):
        assert f"| {escaped} |" in out, escaped
    code, out, _ = report(capsys, str(tmp_path), "--format", "markdown", "--epochs")
    assert "**root: \\*em\\***" in out


def test_grouping_by_train_epochs_does_not_repeat_the_epochs_column(tmp_path: Path, capsys) -> None:
    write_run(tmp_path, "e3", epochs=3)
    write_run(tmp_path, "e4", epochs=4)
    code, out, _ = report(capsys, str(tmp_path), "--by", "train.epochs", "--format", "markdown")
    header = out.splitlines()[0]
    assert code == 0 and header.startswith("| train.epochs | runs | epochs |"), header
