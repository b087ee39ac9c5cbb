"""Trackers read back with their own readers: TensorBoard's event reader, mlflow.search_runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import run_dirs

from nodecli.errors import ConfigError
from nodecli.experiment.trackers import (
    LoggerConfig,
    MLflowConfig,
    TensorBoardConfig,
    Trackers,
    check_trackers,
)
from nodecli.record.read import flatten

ROWS = [
    {
        "epoch": 1,
        "train_time_s": 0.5,
        "train_loss": 2.0,
        "test_acc": 40.0,
        "peak_memory_bytes": float("nan"),
    },
    {
        "epoch": 2,
        "train_time_s": 0.4,
        "train_loss": 1.5,
        "test_acc": 60.0,
        "peak_memory_bytes": float("nan"),
    },
]
TINY2 = ["train.epochs=2", "data.n=200", "train.batch_size=64", "device=cpu"]
PARAMS = flatten({"seed": 0, "sensealg": {"name": "adjoint"}, "data": {"n": None}})


def test_params_are_dotted_keys() -> None:
    assert PARAMS == {"seed": 0, "sensealg.name": "adjoint", "data.n": None}


def test_tensorboard_scalars_read_back(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = Trackers(LoggerConfig(tensorboard=TensorBoardConfig()), tmp_path, PARAMS)
    for row in ROWS:
        trackers.log_epoch(row)
    trackers.finish("completed")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    acc = events.Scalars("epoch/test_acc")
    assert [(e.step, e.value) for e in acc] == [(1, 40.0), (2, 60.0)]
    assert "epoch/peak_memory_bytes" not in events.Tags()["scalars"]  # NaN left out


def test_mlflow_run_reads_back(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    import mlflow

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    cfg = LoggerConfig(mlflow=MLflowConfig(tracking_uri=uri, experiment="t"))
    trackers = Trackers(cfg, tmp_path / "run-1", PARAMS)
    for row in ROWS:
        trackers.log_epoch(row)
    trackers.finish("completed")
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["t"]).to_dict("records")
    assert run["params.sensealg.name"] == "adjoint" and run["status"] == "FINISHED"
    assert run["metrics.test_acc"] == 60.0 and run["metrics.final_test_acc"] == 60.0
    history = mlflow.tracking.MlflowClient(uri).get_metric_history(run["run_id"], "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]


def test_unreachable_tracker_is_one_warning_and_training_goes_on(tmp_path: Path, capsys) -> None:
    pytest.importorskip("mlflow")
    cfg = LoggerConfig(mlflow=MLflowConfig(tracking_uri="http://127.0.0.1:9", experiment="t"))
    trackers = Trackers(cfg, tmp_path, PARAMS)
    trackers.log_epoch(ROWS[0])
    trackers.finish("completed")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nodecli: warning: logger=mlflow failed")
    why = err[0].removeprefix("nodecli: warning: logger=mlflow failed (").split("); it is off")[0]
    assert why.count("(") == why.count(")") and why.count('"') % 2 == 0, why


def test_an_mlflow_database_path_that_is_a_folder_is_one_quick_warning(
    tmp_path: Path, capfd
) -> None:
    """MLflow retried such a store for ~10 s, logging a warning line on every attempt."""
    pytest.importorskip("mlflow")
    folder = tmp_path / "db"
    folder.mkdir()
    cfg = LoggerConfig(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{folder}", experiment="t"))
    start = time.perf_counter()
    Trackers(cfg, tmp_path / "run", PARAMS).finish("completed")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder, not a database file" in err[0], err
    assert time.perf_counter() - start < 5


def test_mlflow_creating_its_store_prints_no_info_lines(tmp_path: Path, capfd) -> None:
    pytest.importorskip("mlflow")
    import logging

    uri = f"sqlite:///{tmp_path}/new-store/mlflow.db"
    trackers = Trackers(LoggerConfig(mlflow=MLflowConfig(tracking_uri=uri)), tmp_path, PARAMS)
    trackers.finish("completed")
    out, err = capfd.readouterr()
    assert "INFO" not in out + err and "database tables" not in out + err
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("short (fine)", "short (fine)"),
        ("first line\nsecond line", "first line"),
        ("word " * 60, ("word " * 40).rstrip() + " …"),
        ("x" * 300, "x" * 200 + " …"),
        ("failed: Max retries (Caused by Error(\"conn(host='h', " + "port=9 " * 40 + '"))',
         "failed: Max retries …"),
    ],
)  # fmt: skip
def test_long_tracker_errors_are_cut_at_a_word_with_nothing_left_open(
    text: str, expected: str
) -> None:
    from nodecli.experiment.trackers import shorten

    assert shorten(text) == expected


def test_missing_client_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(
        "nodecli.experiment.trackers._installed", lambda module: module != "tensorboard"
    )
    with pytest.raises(
        ConfigError, match=r"logger=tensorboard needs tensorboard.*nodecli\[trackers\]"
    ):
        check_trackers(LoggerConfig(tensorboard=TensorBoardConfig()))


@pytest.mark.parametrize("key", ["tracking_uri", "experiment"])
def test_empty_mlflow_keys_are_refused_before_any_work(key: str) -> None:
    # An empty tracking_uri used to log silently to MLflow's default ./mlflow.db.
    with pytest.raises(ConfigError, match=rf"^logger.mlflow.{key} is empty; give one"):
        check_trackers(LoggerConfig(mlflow=MLflowConfig(**{key: " "})))
    check_trackers(LoggerConfig(mlflow=MLflowConfig()))


def test_train_logs_to_both_trackers_what_metrics_csv_holds(cli_here, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    import mlflow
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = cli_here("train", "logger=[tensorboard,mlflow]", "sensealg=adjoint", *TINY2)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for column in ("train_loss", "test_acc", "nfe_forward", "hold_memory_bytes"):
        scalars = events.Scalars(f"epoch/{column}")
        assert [e.step for e in scalars] == metrics["epoch"].tolist()
        # TensorBoard stores float32
        assert [e.value for e in scalars] == pytest.approx(metrics[column].tolist(), rel=1e-6)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    (run,) = mlflow.search_runs(experiment_names=["nodecli"]).to_dict("records")
    assert run["params.sensealg.name"] == "adjoint" and run["status"] == "FINISHED"
    assert run["tags.nodecli.run_dir"] == str(run_dir.resolve()) or run_dir.name in str(
        run["tags.nodecli.run_dir"]
    )
    history = mlflow.tracking.MlflowClient().get_metric_history(run["run_id"], "test_acc")
    assert [(m.step, m.value) for m in history] == list(
        zip(metrics["epoch"], metrics["test_acc"], strict=True)
    )
    assert run["metrics.final_test_acc"] == metrics["test_acc"].iloc[-1]


def test_unreachable_mlflow_server_keeps_the_run_and_its_record(cli_here, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = "logger.mlflow.tracking_uri=http://127.0.0.1:9"
    result = cli_here("train", "logger=mlflow", uri, *TINY2)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "logger=mlflow failed" in line]
    assert len(warnings) == 1 and "Traceback" not in result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2


def test_mlflow_file_store_named_by_the_user_is_used(tmp_path: Path, capsys, monkeypatch) -> None:
    """MLflow 3 refuses `file:` stores unless MLFLOW_ALLOW_FILE_STORE is set, so
    logger.mlflow.tracking_uri=file:… was only a warning and no run."""
    pytest.importorskip("mlflow")
    import mlflow

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"file:{tmp_path}/mlruns"
    trackers = Trackers(LoggerConfig(mlflow=MLflowConfig(tracking_uri=uri)), tmp_path, PARAMS)
    for row in ROWS:
        trackers.log_epoch(row)
    trackers.finish("completed")
    assert "warning" not in capsys.readouterr().err
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["nodecli"]).to_dict("records")
    assert run["metrics.test_acc"] == 60.0 and run["status"] == "FINISHED"


@pytest.mark.slow
def test_parallel_jobs_creating_one_sqlite_store_each_get_their_run(tmp_path: Path) -> None:
    """Parallel sweep jobs (joblib, submitit) creating the default SQLite store at once
    raced in MLflow's schema migration ("table … already exists"): all but one lost
    their run, with a warning each."""
    pytest.importorskip("mlflow")
    import subprocess
    import sys

    import mlflow

    uri = f"sqlite:///{tmp_path}/outputs/mlflow.db"
    code = (
        "import sys; from pathlib import Path\n"
        "from nodecli.experiment.trackers import LoggerConfig, MLflowConfig, Trackers\n"
        f"cfg = LoggerConfig(mlflow=MLflowConfig(tracking_uri={uri!r}))\n"
        "t = Trackers(cfg, Path(sys.argv[1]), {'seed': 0})\n"
        "t.log_epoch({'epoch': 1, 'test_acc': 50.0}); t.finish('completed')\n"
    )
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"job{i}")],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)  # two racing processes show it; each more costs an MLflow import
    ]
    errors = [job.communicate(timeout=120)[1] for job in jobs]
    assert not [e for e in errors if "logger=mlflow failed" in e], errors
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["nodecli"])
    assert sorted(runs["tags.mlflow.runName"]) == [f"job{i}" for i in range(2)]


def test_runs_sharing_a_tensorboard_log_dir_stay_apart(tmp_path: Path, monkeypatch) -> None:
    """Sweep jobs (or trains) given one logger.tensorboard.log_dir all wrote into it, so
    TensorBoard showed one run whose series had every step once per job."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    cfg = LoggerConfig(tensorboard=TensorBoardConfig(log_dir="tb"))
    sweep = Path("outputs/sweeps/d/t")
    for job, scale in (("0_seed=0", 1.0), ("1_seed=1", 10.0)):
        trackers = Trackers(cfg, sweep / job, PARAMS)
        for row in ROWS:
            trackers.log_epoch({**row, "train_loss": row["train_loss"] * scale})
        trackers.finish("completed")
    for job, scale in (("0_seed=0", 1.0), ("1_seed=1", 10.0)):
        events = EventAccumulator(str(tmp_path / "tb" / sweep / job))
        events.Reload()
        loss = [(e.step, e.value) for e in events.Scalars("epoch/train_loss")]
        assert loss == [(1, 2.0 * scale), (2, 1.5 * scale)]
