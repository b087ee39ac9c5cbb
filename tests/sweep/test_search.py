"""Hyper-parameter search with Hydra's Optuna sweeper: planning in process, one real search."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import TINY

from nodecli.errors import ConfigError
from nodecli.sweep.plan import plan_sweep, validate_jobs
from nodecli.sweep.search import best_trial, objective_value, plan_search, probe_jobs, trial_result

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

SEARCH = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3"]


def test_probes_put_every_searched_key_at_its_bounds_and_choices() -> None:
    probes = probe_jobs(
        ["train.lr=tag(log,interval(1e-4,1e-2))", "sensealg=direct,adjoint,gauss", "seed=1"]
    )
    assert probes == [
        ["train.lr=0.0001", "sensealg=direct", "seed=1"],
        ["train.lr=0.01", "sensealg=adjoint", "seed=1"],
        ["train.lr=0.0001", "sensealg=gauss", "seed=1"],
    ]


def test_search_plan_takes_trials_objective_and_direction() -> None:
    plan = plan_sweep([*SEARCH, "train.lr=interval(1e-4,1e-2)", "sweep.objective=epoch_time"])
    assert plan.search is not None and plan.jobs == []
    assert (plan.search.n_trials, plan.search.objective, plan.search.direction) == (
        3,
        "epoch_time",
        "minimize",
    )
    assert plan_search(["seed=0,1"], [], None).direction == "maximize"  # test_acc by default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.lr=interval(-1,1e-2)"], "train.lr=-1.0 is out of range"),
        (["train.lrr=interval(1e-4,1e-2)"], "did you mean 'train.lr'"),
        (["sensealg=direct,nope"], "sensealg=nope is not an option"),
        (["sweep.objective=loss"], "valid: test_acc, train_acc, epoch_time, train_time"),
        (["hydra.sweeper.direction=minimize"], "leave out hydra.sweeper.direction"),
        (["train.lr=interval(1e-1,1e-4)"], r"low bound 0.1 is not below .* interval\(0.0001,0.1\)"),
        (["train.lr=interval(1e-3,1e-3)"], "low bound 0.001 is not below its high bound 0.001"),
        (["train.lr=tag(log,interval(0,1e-2))"], "log-scale interval needs a positive low bound"),
        (["sweep.objective=test_acc,train_acc"], "optimises one objective; valid: sweep.obj"),
        (["sweep.objectve=test_acc"], "did you mean 'sweep.objective'"),
        # Optuna failed only after the sweep folder and sweep.json were written:
        (
            ["hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db", "seed=0,1"],
            "hydra.sweeper.storage=sqlite:////nonexistent/dir/x.db: no folder /nonexistent/dir",
        ),
        (
            ["hydra/sweeper/sampler=grid", "train.lr=interval(0.001,0.01)"],
            r"'train.lr=interval\(0.001,0.01\)': the grid sampler searches listed values only",
        ),
        (  # a value for a section: "set one of its keys: " with an empty list
            ["hydra.sweeper.sampler=grid", "seed=0,1"],
            "hydra/sweeper/sampler=NAME, NAME one of tpe, random, cmaes, nsgaii, motpe, grid",
        ),
        (["train.lr=0.001"], "the search has nothing to search"),  # n identical trials
    ],
)
def test_a_search_that_cannot_work_is_refused_before_anything_runs(args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_jobs(plan_sweep([*SEARCH, *args]))


@pytest.mark.parametrize("value", ["abc", "null", "''", "", "[1,2]", "1,2", "0", "-3", "2.5"])
def test_trial_counts_other_than_a_positive_integer_are_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_sweep(["hydra/sweeper=optuna", f"hydra.sweeper.n_trials={value}"])
    message = str(err.value)
    assert message.startswith("hydra.sweeper.n_trials=") and "\n" not in message
    if value == "1,2":  # a list: refused as for every Hydra setting given several values
        assert "take one value for the whole sweep" in message
    else:
        assert "valid: a positive integer" in message


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code), out, err


def test_a_reversed_interval_exits_2_and_writes_nothing(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", *SEARCH, "train.lr=interval(1e-1,1e-4)", "train.epochs=1", "data.n=200"]
    code, _, err = run_main(args, capsys)
    assert code == 2 and "low bound 0.1 is not below" in err, err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_search_whose_trials_all_fail_ends_in_the_summary(tmp_path: Path, monkeypatch, capsys):
    """Optuna's "No trials are completed yet" is no error of nodecli's: the summary says it."""
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "device=cpu",
            "train.lr=interval(1e-4,1e-2)", "solver.max_steps=1", *TINY]  # fmt: skip
    code, out, err = run_main(args, capsys)
    assert code == 1, out + err
    assert "No trials are completed" not in out + err and "Traceback" not in err
    assert "no trial completed, so there is no best test_acc" in out
    assert "2 of 2 job(s) did not complete" in out
    assert len(list(tmp_path.glob("outputs/sweeps/*/*/*/run.json"))) == 2  # records kept


def test_objective_without_a_search_and_resume_of_a_search_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sweep.objective is for searches"):
        plan_sweep(["seed=0,1", "sweep.objective=test_acc"])
    (tmp_path / "sweep.json").write_text(json.dumps({"objective": "test_acc", "n_jobs": 2}))
    with pytest.raises(ConfigError, match="cannot continue an Optuna search"):
        plan_sweep([f"sweep.resume={tmp_path}"])


def write_trial(job_dir: Path, status: str, rows: list[tuple[float, float]]) -> Path:
    job_dir.mkdir(parents=True)
    (job_dir / "run.json").write_text(json.dumps({"status": status}))
    lines = ["epoch,train_time_s,train_acc,test_acc"]
    lines += [f"{i},{t},50.0,{acc}" for i, (t, acc) in enumerate(rows, start=1)]
    (job_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return job_dir


def test_objectives_are_read_back_from_the_record(tmp_path: Path) -> None:
    run = write_trial(tmp_path / "0", "completed", [(3.0, 40.0), (1.0, 60.0), (2.0, 70.0)])
    assert objective_value(run, "test_acc") == 70.0
    assert objective_value(run, "train_acc") == 50.0
    assert objective_value(run, "epoch_time") == 1.5  # median of epochs 2..N
    assert objective_value(run, "train_time") == 6.0
    failed = write_trial(tmp_path / "1", "failed", [(1.0, 90.0)])
    assert math.isnan(objective_value(failed, "test_acc"))
    assert trial_result(failed, "test_acc") is None  # a failed trial for the sweeper
    search = plan_search(["seed=0,1"], [], "test_acc")
    assert best_trial({0: run, 1: failed}, search) == (0, run, 70.0)


def test_optuna_search_of_four_trials_reports_its_best(cli_here, tmp_path: Path) -> None:
    result = cli_here(
        "sweep",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.seed=0",
        "train.lr=tag(log,interval(1e-4,3e-2))",
        "solver.rtol=interval(1e-4,1e-2)",
        "train.epochs=1",
        "data.n=300",
        "train.batch_size=64",
        "device=cpu",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (sweep_dir,) = [p.parent for p in tmp_path.glob("outputs/sweeps/*/*/sweep.json")]
    trials = {int(p.parent.name.split("_")[0]): p.parent for p in sweep_dir.glob("*/run.json")}
    assert sorted(trials) == [0, 1, 2, 3]
    values = {num: objective_value(path, "test_acc") for num, path in trials.items()}
    best = max(values, key=lambda n: values[n])
    assert f"[sweep] best trial: job {best}, test_acc = {values[best]:.6g}" in result.stdout
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    assert plan["objective"] == "test_acc" and len(plan["jobs"]) == 4
    assert all(any(o.startswith("train.lr=") for o in job) for job in plan["jobs"])
    report = cli_here("report", str(sweep_dir), "--format", "csv")
    assert report.returncode == 0, report.stderr
    assert len(report.stdout.strip().splitlines()) == 1 + 4  # one group per trial


@pytest.mark.parametrize(
    ("value", "probed"),
    [
        ("range(0.5,1.0,0.25)", ["0.5", "1.0"]),  # the Optuna sweeper includes the stop
        ("range(0.5,1.0)", ["0.5"]),
        ("range(0.1,0.95,0.2)", ["0.1", "0.9"]),
        ("shuffle(range(0.5,1.0,0.25))", ["0.5", "0.75"]),  # a choice, stop excluded
    ],
)
def test_range_probes_cover_the_stop_value_optuna_can_draw(value: str, probed: list[str]) -> None:
    """Hydra's Optuna sweeper turns range(a,b) into a distribution with b *included*, so
    range(0.5,1.0,0.25) could hand a trial data.split=1.0, which no probe had checked: a
    failed trial mid-search instead of one line and exit 2 before it."""
    jobs = probe_jobs([f"data.split={value}"])
    assert sorted(job[0] for job in jobs) == [f"data.split={v}" for v in probed]


def test_a_range_whose_stop_is_invalid_is_refused_before_the_search() -> None:
    with pytest.raises(ConfigError, match="data.split=1.0 is out of range"):
        validate_jobs(plan_sweep([*SEARCH, "data.split=range(0.5,1.0,0.25)"]))
    with pytest.raises(ConfigError, match="low <= high and step > 0"):
        plan_sweep([*SEARCH, "train.epochs=range(5,1,-1)"])


@pytest.mark.parametrize(
    ("plugin", "module", "extra"),
    [
        ("hydra/sweeper=optuna", "optuna", "nodecli[hpo]"),
        ("hydra/launcher=submitit_slurm", "submitit", "nodecli[launchers]"),
        ("hydra/launcher=joblib", "joblib", "nodecli[launchers]"),
    ],
)
def test_a_plugin_whose_library_is_missing_is_one_line_before_anything_runs(
    plugin: str, module: str, extra: str, monkeypatch
) -> None:
    """The plugin's config was found, so the sweep started, wrote its folder, and then
    every job failed (submitit, joblib) or a traceback ended it (optuna)."""
    monkeypatch.setitem(sys.modules, module, None)  # find_spec: None, as when missing
    search = ["train.lr=interval(1e-4,1e-2)"] if "optuna" in plugin else ["seed=0,1"]
    with pytest.raises(
        ConfigError, match=rf"{plugin} needs the {module} package.*{re.escape(extra)}"
    ):
        validate_jobs(plan_sweep([plugin, *search]))
