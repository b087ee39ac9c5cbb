"""`nodecli report --x KEY --plot FILE`: memory and time against a swept numeric key."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_records import make_run, report

from nodecli.errors import EXIT_USAGE


def study(root: Path, methods=("direct", "adjoint"), hiddens=(8, 32, 128), t1s=(1, 4)) -> int:
    """One run per method × width × horizon, with held and peak memory growing with width."""
    n = 0
    for method in methods:
        for hidden in hiddens:
            for t1 in t1s:
                run = make_run(root, f"{n}", sensealg=method, memory=1000.0 * hidden * t1)
                (run / ".hydra" / "config.yaml").write_text(
                    f"seed: 0\nresume: null\nsolver:\n  method: tsit5\nsensealg:\n"
                    f"  name: {method}\nmodel:\n  hidden: {hidden}\n  t1: {t1}\n"
                )
                metrics = run / "metrics.csv"
                lines = metrics.read_text().splitlines()
                lines = [lines[0] + ",hold_memory_bytes"] + [
                    f"{x},{500 * hidden}" for x in lines[1:]
                ]
                metrics.write_text("\n".join(lines) + "\n")
                n += 1
    return n


def test_x_draws_three_panels_with_one_line_per_other_key_combination(tmp_path, capsys):
    from nodecli.record.layout import find_run_dirs
    from nodecli.report.aggregate import load_runs, summarize
    from nodecli.report.scaling import build_x_figure, x_key

    n = study(tmp_path / "runs")
    df = load_runs(find_run_dirs([str(tmp_path / "runs")]), 600)
    summary = summarize(df, ["sensealg", "model.hidden", "model.t1"])
    fig = build_x_figure(df, summary, x_key(summary, "model.hidden"))
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) == 3
    for ax in panels:
        lines = ax.get_lines()
        assert len(lines) == 2 * 2  # methods × horizons
        assert sum(len(line.get_xdata()) for line in lines) == n
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # 8..128: over 10×
    assert len(fig.legends) == 2  # colours (sensealg) and line styles (t1)


def test_x_writes_the_png_through_the_atomic_writer(tmp_path, capsys, monkeypatch):
    from nodecli.report import plot as plot_module

    study(tmp_path / "runs", hiddens=(8, 64, 1024))
    written = []
    real = plot_module.atomic_write_bytes
    monkeypatch.setattr(
        plot_module,
        "atomic_write_bytes",
        lambda path, data: (written.append(path), real(path, data)),
    )
    target = tmp_path / "scaling.png"
    code, _, err = report(
        capsys, str(tmp_path / "runs"), "--by", "sensealg,model.hidden,model.t1",
        "--x", "model.hidden", "--plot", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert written == [target]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_x_on_a_narrow_range_keeps_a_linear_x_axis(tmp_path):
    from nodecli.record.layout import find_run_dirs
    from nodecli.report.aggregate import load_runs, summarize
    from nodecli.report.scaling import build_x_figure

    study(tmp_path / "runs", hiddens=(8, 16, 32))
    df = load_runs(find_run_dirs([str(tmp_path / "runs")]), 600)
    summary = summarize(df, ["sensealg", "model.hidden", "model.t1"])
    fig = build_x_figure(df, summary, "model.hidden")
    assert {ax.get_xscale() for ax in fig.axes if ax.get_lines()} == {"linear"}


@pytest.mark.parametrize(
    ("key", "why"),
    [("solver", "not a grouping key"), ("sensealg", "not numbers"), ("nosuch", "not a grouping")],
)
def test_x_refuses_a_key_that_is_not_a_numeric_grouping_key(tmp_path, capsys, key, why):
    study(tmp_path / "runs")
    target = tmp_path / "scaling.png"
    code, out, err = report(
        capsys, str(tmp_path / "runs"), "--by", "sensealg,model.hidden,model.t1",
        "--x", key, "--plot", str(target),
    )  # fmt: skip
    assert code == EXIT_USAGE
    assert why in err and "valid: model.hidden, model.t1" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not target.exists() and out == ""


def test_x_without_plot_or_with_facet_is_refused(tmp_path, capsys):
    study(tmp_path / "runs")
    code, _, err = report(capsys, str(tmp_path / "runs"), "--x", "model.hidden")
    assert code == EXIT_USAGE and "--plot" in err
    code, _, err = report(
        capsys, str(tmp_path / "runs"), "--x", "model.hidden", "--facet", "model.t1",
        "--plot", str(tmp_path / "f.png"),
    )  # fmt: skip
    assert code == EXIT_USAGE and "--facet" in err
