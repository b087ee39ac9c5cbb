"""`nodecli report` on hand-made run records: grouping, mean ± std, statuses, damaged
files, formats and the plot. (tests/test_sweep.py runs it on real sweeps.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from report_records import make_run, report, three_by_two

from nodecli.report.command import load_runs, summarize


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def test_load_runs_one_row_per_run_and_epoch(tmp_path: Path) -> None:
    three_by_two(tmp_path)
    df = load_runs(tmp_path)  # one path or a list of them
    assert len(df) == 6 * 4
    assert {"sensealg.name", "solver.method", "seed", "train.epochs", "status"} <= set(df.columns)
    assert set(df["sensealg.name"]) == {"direct", "adjoint", "gauss"}
    assert "sensealg.name" in df.attrs["config_columns"]
    assert df.groupby("run_dir")["epoch"].apply(list).map(lambda e: e == [1, 2, 3, 4]).all()


def test_summary_groups_by_varying_keys_mean_std_and_speedup(tmp_path: Path) -> None:
    three_by_two(tmp_path)
    summary = summarize(load_runs([tmp_path]))
    assert summary.by == ["sensealg.name"]  # the seed varies too, but is averaged over
    groups = summary.groups.set_index("sensealg")
    assert list(summary.groups["sensealg"]) == ["direct", "adjoint", "gauss"]  # baseline first
    assert (groups["runs"] == 2).all()
    direct = groups.loc["direct"]
    # Per run: median of epochs 2..4 = median(1.0, 1.2, 0.8) = 1.0 (+0.1 for seed 1)
    assert direct["epoch_time_s_mean"] == pytest.approx(1.05)
    assert direct["epoch_time_s_std"] == pytest.approx(0.0707107, rel=1e-4)
    assert direct["first_epoch_s_mean"] == pytest.approx(2.05)
    assert direct["total_train_s_mean"] == pytest.approx(5.2)
    assert direct["final_test_acc_mean"] == pytest.approx(81.0)
    assert direct["best_test_acc_mean"] == pytest.approx(81.0)
    assert direct["final_train_acc_mean"] == pytest.approx(76.0)
    assert direct["nfe_backward_mean"] == pytest.approx(200.5)
    assert groups.loc["direct", "speedup"] == pytest.approx(1.0)
    assert groups.loc["adjoint", "speedup"] == pytest.approx(1.05 / 0.55)
    assert not summary.memory_columns  # CPU runs record no memory


def test_a_key_named_twice_in_by_groups_once(tmp_path: Path) -> None:
    # `--by sensealg,sensealg` headed the label column "sensealg.name · sensealg.name".
    three_by_two(tmp_path)
    summary = summarize(load_runs([tmp_path]), by=["sensealg", "sensealg.name"])
    assert summary.by == ["sensealg.name"]
    assert summary.header == "sensealg"


def test_cli_markdown_is_a_valid_table_with_mean_std(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    code, out, err = report(capsys, str(tmp_path), "--format", "markdown")
    assert code == 0, err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3
    widths = {line.count(" | ") for line in table}
    assert len(widths) == 1, table  # every row has the same number of cells
    assert all(line.endswith(" |") for line in table)
    assert set(table[1].replace("|", "").split()) <= {"---", "---:"}
    assert table[0].startswith("| sensealg | runs |")  # the key named once
    assert "| direct | 2 | 4 |" in table[2]
    assert "81.00 ± 1.41" in table[2]  # final test accuracy over seeds 0 and 1
    assert "1.00×" in table[2] and "1.91×" in out  # adjoint is 1.05 / 0.55 times faster
    assert "runs (+k)" not in out  # no run was kept out: nothing to explain


def test_cli_formats_csv_json_latex_and_rich(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    code, out, _ = report(capsys, str(tmp_path), "--format", "csv")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame["runs"]) == [2, 2, 2] and "epoch_time_s_std" in frame
    code, out, _ = report(capsys, str(tmp_path), "--format", "json")
    data = json.loads(out)
    assert data["group_by"] == ["sensealg"] and data["baseline"] == {"sensealg": "direct"}
    assert len(data["groups"]) == 3 and data["incomplete"] == []
    code, out, _ = report(capsys, str(tmp_path), "--format", "latex")
    assert out.startswith("\\begin{tabular}") and "$\\pm$" in out and "\\end{tabular}" in out
    code, out, _ = report(capsys, str(tmp_path))
    assert code == 0 and "│ adjoint " in out and "±" in out and "speed-up" in out


def test_by_where_and_baseline_options(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    make_run(tmp_path, "direct-dopri5", "direct", 0, solver="dopri5")
    code, out, err = report(capsys, str(tmp_path), "--format", "json")
    assert json.loads(out)["group_by"] == ["solver", "sensealg"]
    code, out, _ = report(capsys, str(tmp_path), "--where", "solver=tsit5", "--format", "json")
    assert [g["runs"] for g in json.loads(out)["groups"]] == [2, 2, 2]
    code, out, _ = report(
        capsys, str(tmp_path), "--by", "solver", "--baseline", "solver=dopri5", "--format", "json"
    )
    groups = json.loads(out)["groups"]
    assert [(g["group"], g["runs"]) for g in groups] == [("dopri5", 1), ("tsit5", 6)]
    code, out, _ = report(
        capsys,
        str(tmp_path),
        "--where",
        "sensealg=adjoint|gauss",
        "--format",
        "json",
        "--baseline",
        "none",
    )
    data = json.loads(out)
    assert data["baseline"] is None and [g["sensealg"] for g in data["groups"]] == [
        "adjoint",
        "gauss",
    ]
    for args, message in [
        (["--by", "nope"], "--by: unknown key 'nope'; valid keys:"),
        (["--where", "sensealg=nope"], "no run under"),
        (["--where", "sensealg"], "--where expects key=value"),
        (["--baseline", "sensealg=nope"], "--baseline sensealg=nope matches no group"),
        (["--format", "html"], "invalid choice"),
    ]:
        code, out, err = report(capsys, str(tmp_path), *args)
        assert code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_incomplete_runs_are_listed_and_kept_out_of_means(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    make_run(tmp_path, "failed", "direct", 2, status="failed", times=(9.0,), accs=(10.0,))
    make_run(tmp_path, "interrupted", "adjoint", 2, status="interrupted", times=(), accs=())
    # A SIGKILLed run: status still 'running', heartbeat 20 minutes old.
    make_run(tmp_path, "killed", "gauss", 2, status="running", heartbeat_ago=1200)
    # A live run: fresh heartbeat, our own (alive) pid.
    make_run(tmp_path, "live", "gauss", 3, status="running", heartbeat_ago=1)
    # Fresh heartbeat but its process is gone on this host: stale too.
    make_run(tmp_path, "dead-pid", "gauss", 4, status="running", heartbeat_ago=1, pid=2**22 + 7)
    df = load_runs([tmp_path])
    states = df.drop_duplicates("run_dir").set_index("run_dir")["status"]
    assert states[str(tmp_path / "killed")] == "stale"
    assert states[str(tmp_path / "live")] == "running"
    assert states[str(tmp_path / "dead-pid")] == "stale"
    summary = summarize(df)
    groups = summary.groups.set_index("sensealg")
    assert list(groups["runs"]) == [2, 2, 2]
    assert groups.loc["direct", "final_test_acc_mean"] == pytest.approx(81.0)
    assert sorted(summary.incomplete["status"]) == [
        "failed",
        "interrupted",
        "running",
        "stale",
        "stale",
    ]
    code, out, err = report(capsys, str(tmp_path), "--format", "markdown")
    assert code == 0, err
    assert "| direct | 2 (+1) |" in out and "runs (+k): k runs not completed" in out
    assert "SolverError: boom" in out and "stale" in out and "interrupted" in out
    code, out, err = report(capsys, str(tmp_path), "--stale-after", "5000", "--format", "json")
    stale = [r for r in json.loads(out)["incomplete"] if r["status"] == "stale"]
    assert len(stale) == 1  # only the dead pid; the 20-minute-old heartbeat is now fresh


def test_damaged_files_are_skipped_with_one_warning_each(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    truncated = make_run(tmp_path, "truncated", "direct", 5)
    text = (truncated / "metrics.csv").read_text()
    (truncated / "metrics.csv").write_text(text[: len(text) - 25])
    bad_json = make_run(tmp_path, "bad-json", "direct", 6)
    (bad_json / "run.json").write_text('{"status": "compl')
    empty_json = make_run(tmp_path, "empty-json", "direct", 7)
    (empty_json / "run.json").write_text("")
    no_metrics = make_run(tmp_path, "no-metrics", "direct", 8)
    (no_metrics / "metrics.csv").unlink()
    no_run = make_run(tmp_path, "no-run-json", "direct", 9)
    (no_run / "run.json").unlink()
    empty_csv = make_run(tmp_path, "empty-csv", "direct", 10)
    (empty_csv / "metrics.csv").write_text("")
    no_config = make_run(tmp_path, "no-config", "direct", 11)
    (no_config / ".hydra" / "config.yaml").unlink()
    code, out, err = report(capsys, str(tmp_path), "--format", "json")
    assert code == 0
    assert [g["runs"] for g in json.loads(out)["groups"]] == [2, 2, 2]
    warnings = err.strip().splitlines()
    assert len(warnings) == 7, err
    for path in (
        truncated / "metrics.csv",
        bad_json / "run.json",
        empty_json / "run.json",
        no_metrics / "metrics.csv",
        no_run / "run.json",
        empty_csv / "metrics.csv",
        no_config / ".hydra" / "config.yaml",
    ):
        assert any(
            line.startswith("nodecli: warning: skipping") and str(path) in line for line in warnings
        ), (path, err)


def test_old_attempts_are_not_reported(tmp_path: Path) -> None:
    make_run(tmp_path, "job", "direct", 0)
    make_run(tmp_path / "job" / "attempts", "1", "direct", 0, status="failed")
    df = load_runs([tmp_path])
    assert list(df["run_dir"].unique()) == [str(tmp_path / "job")]


def test_missing_path_and_empty_folder_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = report(capsys, str(tmp_path / "nope"))
    assert (
        code == 2
        and err.strip() == f"nodecli: error: {tmp_path / 'nope'}: no such file or directory"
    )
    (tmp_path / "empty").mkdir()
    code, _, err = report(capsys, str(tmp_path / "empty"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no run records" in err


def test_default_path_is_outputs(cli_here, tmp_path: Path) -> None:
    result = cli_here("report")
    assert result.returncode == 2
    assert result.stderr.strip() == "nodecli: error: outputs: no such file or directory"
    three_by_two(tmp_path / "outputs" / "runs")
    result = cli_here("report", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    assert sum(f"| {s} | 2 |" in result.stdout for s in ("direct", "adjoint", "gauss")) == 3


def test_memory_columns_are_aggregated_when_recorded(tmp_path: Path) -> None:
    for seed in (0, 1):
        make_run(
            tmp_path,
            f"gpu-{seed}",
            "direct",
            seed,
            memory=2**20 * (seed + 1),
            extra_columns=",hold_memory_bytes",
        )
    summary = summarize(load_runs([tmp_path]))
    assert summary.memory_columns == ["peak_memory_bytes", "hold_memory_bytes"]
    assert summary.groups["peak_memory_bytes_mean"].iloc[0] == pytest.approx(1.5 * 2**20)


def test_plot_writes_png(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path / "runs")
    target = tmp_path / "report.png"
    code, _, err = report(capsys, str(tmp_path / "runs"), "--plot", str(target), "--format", "csv")
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = report(capsys, str(tmp_path / "runs"), "--plot", str(tmp_path / "no" / "x.png"))
    assert code == 2 and "does not exist" in err


def test_sigkilled_run_is_reported_stale(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from conftest import nodecli_command

    process = subprocess.Popen(
        [*nodecli_command(), "train", "train.epochs=500", "data.n=200", "train.batch_size=64"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = list(tmp_path.glob("outputs/runs/*/*/metrics.csv"))
            if rows and len(rows[0].read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never finished an epoch")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (run_dir,) = (p.parent for p in tmp_path.glob("outputs/runs/*/*/run.json"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    summary = summarize(load_runs([tmp_path / "outputs"]))
    (row,) = summary.incomplete.to_dict(orient="records")
    assert row["status"] == "stale" and row["epochs"] >= 1
    assert summary.groups["runs"].tolist() == [0]


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_stale_after_must_be_a_positive_finite_number(tmp_path: Path, capsys, value: str) -> None:
    code, out, err = report(capsys, str(tmp_path), f"--stale-after={value}")
    assert code == 2 and out == ""
    assert err.startswith(f"nodecli: error: --stale-after={value} is out of range")
    assert len(err.strip().splitlines()) == 1


def test_epochs_with_no_completed_run_says_so_and_fails(tmp_path: Path, capsys) -> None:
    """--epochs over failed runs only printed its footer line and exited 0."""
    make_run(tmp_path, "bad", status="failed")
    code, out, err = report(capsys, str(tmp_path), "--epochs")
    assert code == 1 and out == ""
    assert "no completed run with a finished epoch" in err and "failed run" in err


# --- red-team findings (each failed before its fix) ----------------------------------------


def test_one_folder_named_twice_or_through_a_symlink_is_read_once(tmp_path: Path) -> None:
    three_by_two(tmp_path / "sw")
    (tmp_path / "link").symlink_to(tmp_path / "sw")
    df = load_runs([tmp_path / "sw", str((tmp_path / "sw").resolve()), tmp_path / "link"])
    assert df["run_dir"].nunique() == 6


def test_a_file_that_is_not_a_record_is_refused(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    (tmp_path / "notes.txt").write_text("hi\n")
    code, _, err = report(capsys, str(tmp_path / "notes.txt"))
    assert code == 2 and "is a file, not a run or sweep folder" in err
    code, out, _ = report(capsys, str(tmp_path / "direct-0" / "run.json"))
    assert code == 0 and "1 run(s)" in out


def test_labels_are_never_read_as_rich_markup(tmp_path: Path, capsys) -> None:
    """dataset.root='/tmp/[/red]oops' raised MarkupError; '[bold]x' lost its brackets."""
    for name, solver in (("a", "'[/red]oops'"), ("b", "'[bold]weird'"), ("c", "tsit5")):
        make_run(tmp_path, name, solver=solver)  # quoted: YAML strings
    code, out, err = report(capsys, str(tmp_path))
    assert code == 0, err
    assert "[/red]oops" in out and "[bold]weird" in out
    code, out, err = report(capsys, str(tmp_path), "--epochs")
    assert code == 0 and "[/red]oops" in out, err
    run = make_run(tmp_path, "d", status="failed")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "[/weird]"}))
    code, out, err = report(capsys, str(tmp_path))
    assert code == 0 and "[/weird]" in out, err


def test_values_no_run_writes_make_the_record_damaged(tmp_path: Path, capsys) -> None:
    """inf crashed --plot (set_xlim), -1 gave a speed-up of -66×, 1e308 crashed arange.
    One run damaged each way: each is skipped with its own message, the others plotted."""
    three_by_two(tmp_path)
    damage = {
        "direct-0": ("train_time_s", "inf", "train_time_s=inf on line 3 is out of range"),
        "adjoint-0": ("train_time_s", "-1", "train_time_s=-1.0 on line 3 is out of range"),
        "gauss-0": ("test_acc", "1e308", "test_acc=1e+308 on line 3 is out of range"),
        "direct-1": ("test_acc", "-inf", "test_acc=-inf on line 3 is out of range"),
    }
    for run, (column, value, _) in damage.items():
        path = tmp_path / run / "metrics.csv"
        frame = pd.read_csv(path)
        frame[column] = frame[column].astype(object)
        frame.loc[1, column] = value
        frame.to_csv(path, index=False)
    code, _, err = report(capsys, str(tmp_path), "--plot", str(tmp_path / "f.png"))
    assert code == 0 and (tmp_path / "f.png").stat().st_size > 0, err
    for run, (_, _, message) in damage.items():
        line = next(line for line in err.splitlines() if f"{run}/metrics.csv" in line)
        assert "skipping" in line and message in line, err
    assert "Traceback" not in err and "RuntimeWarning" not in err


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        ([1, 1, 2], "epoch 1 on line 3 where epoch 2 belongs"),
        ([1, 1.5], "epoch 1.5 on line 3 where epoch 2 belongs"),
        ([2, 3], "epoch 2 on line 2 where epoch 1 belongs"),
    ],
)
def test_epochs_out_of_order_make_the_record_damaged(
    tmp_path: Path, capsys, epochs: list[float], message: str
) -> None:
    """A duplicated row was read as a second run (`2 runs` in --epochs for one run)."""
    three_by_two(tmp_path)
    path = tmp_path / "direct-0" / "metrics.csv"
    frame = pd.read_csv(path).iloc[[0] * len(epochs)].reset_index(drop=True)
    frame["epoch"] = epochs
    frame.to_csv(path, index=False)
    code, out, err = report(capsys, str(tmp_path), "--epochs")
    assert code == 0 and message in err and "skipping" in err, err
    assert "Traceback" not in err


def test_an_empty_config_or_a_truncated_metrics_header_is_damage(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    (tmp_path / "direct-0" / ".hydra" / "config.yaml").write_text("")
    metrics = tmp_path / "adjoint-0" / "metrics.csv"
    metrics.write_text(metrics.read_text()[:60])  # cut inside the header: no rows left
    info = json.loads((metrics.parent / "run.json").read_text())
    (metrics.parent / "run.json").write_text(json.dumps({**info, "epochs_completed": 4}))
    code, out, err = report(capsys, str(tmp_path))
    assert code == 0, err
    assert "direct-0/.hydra/config.yaml: empty" in err
    assert "adjoint-0/metrics.csv: 0 row(s) but run.json records" in err
    assert "unset" not in out and "4 run(s)" in out


def test_a_hand_added_metrics_column_named_like_a_record_key_is_kept(tmp_path: Path) -> None:
    """An annotated metrics.csv with a `status` column raised 'cannot insert status'."""
    three_by_two(tmp_path)
    path = tmp_path / "gauss-1" / "metrics.csv"
    frame = pd.read_csv(path).assign(status="ok", seed=7)
    frame.to_csv(path, index=False)
    df = load_runs([tmp_path])
    mine = df[df["run_dir"] == str(tmp_path / "gauss-1")]
    assert set(mine["status"]) == {"completed"} and set(mine["seed"]) == {1}
    assert set(mine["status (metrics.csv)"]) == {"ok"}


def test_groups_sort_numbers_as_numbers_and_baseline_compares_them(tmp_path: Path) -> None:
    for seed in (0, 1, 2, 10, 11):
        make_run(tmp_path, f"s{seed}", seed=seed)
    summary = summarize(load_runs([tmp_path]), ["seed"], "seed=10.0")
    assert list(summary.groups["seed"]) == ["10", "0", "1", "2", "11"]  # baseline first
    assert summary.groups["speedup"].notna().all()


def test_a_baseline_group_without_an_epoch_time_is_said(tmp_path: Path, capsys) -> None:
    """Every speed-up was '–' with no word why."""
    three_by_two(tmp_path)
    for seed in (0, 1):
        run = tmp_path / f"gauss-{seed}"
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "status": "failed"}))
    code, _, err = report(capsys, str(tmp_path), "--baseline", "sensealg=gauss")
    assert code == 2 and "no completed run of that group has a finished epoch" in err
    for flag in ("--plot", "--baseline", "--by", "--facet"):  # --by/--facet '': the default
        code, _, err = report(capsys, str(tmp_path), flag, "")
        assert code == 2 and f"{flag} is empty" in err
    code, _, err = report(capsys, str(tmp_path), "")  # '' read the whole current folder
    assert code == 2 and "an empty path was given" in err


def test_latex_rows_never_open_with_a_bracket(tmp_path: Path, capsys) -> None:
    """`\\\\` followed by `[1/4]` is read as a spacing argument: pdflatex stopped."""
    three_by_two(tmp_path)
    make_run(tmp_path, "odd", solver="'[link=x]click'")
    for extra in ((), ("--epochs",)):
        code, out, _ = report(capsys, str(tmp_path), "--format", "latex", *extra)
        rows = [line for line in out.splitlines() if line.endswith("\\\\")]
        assert code == 0 and rows and not any(row.startswith("[") for row in rows), out
    assert "\\multicolumn" in out  # --epochs: each group's name is typeset


def test_the_figure_is_written_before_a_closed_pipe_stops_the_tables(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    three_by_two(tmp_path)

    def closed_pipe(summary) -> None:
        raise BrokenPipeError

    from nodecli.report.command import report_command

    monkeypatch.setattr("nodecli.report.table.render_rich", closed_pipe)
    with pytest.raises(BrokenPipeError):  # cli.main turns it into a quiet exit 141
        report_command([str(tmp_path), "--plot", str(tmp_path / "f.png")])
    assert (tmp_path / "f.png").stat().st_size > 0


def test_the_figure_uses_the_tables_memory_unit(tmp_path: Path) -> None:
    """Above 100 MiB the table says MiB; the figure kept KiB with a 1e6 axis offset."""
    import matplotlib.pyplot as plt

    from nodecli.report.plot import build_figure

    three_by_two(tmp_path)
    for run in tmp_path.iterdir():
        path = run / "metrics.csv"
        pd.read_csv(path).assign(hold_memory_bytes=300 * 2**20).to_csv(path, index=False)
    df = load_runs([tmp_path])
    fig = build_figure(df, summarize(df))
    try:
        assert any(ax.get_ylabel() == "held memory (MiB)" for ax in fig.axes)
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "text",
    [
        "lr: 1e-3\nday: 2001-12-14\nflags: [yes, off, ~, 0x1F, 1_000, .inf]\nm: {a: '1'}\n",
        "1: an int key\n",  # not plain data: read by OmegaConf itself
        "a: 1\na: 2\n",  # a duplicated key is damage
        "a: [unclosed\n",
    ],
)
def test_a_config_reads_as_omegaconf_reads_it(tmp_path: Path, text: str) -> None:
    """The report parses config.yaml with libyaml, OmegaConf.load's rules and messages."""
    from omegaconf import OmegaConf

    from nodecli.record.read import read_config_tree

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(text)
    try:
        expected = OmegaConf.to_container(OmegaConf.load(tmp_path / ".hydra" / "config.yaml"))
    except Exception as exc:  # noqa: BLE001 - whatever OmegaConf raises, said in one line
        with pytest.raises(ValueError) as error:
            read_config_tree(tmp_path)
        assert str(error.value) == f"invalid YAML ({str(exc).splitlines()[0]})"
    else:
        assert read_config_tree(tmp_path) == expected
