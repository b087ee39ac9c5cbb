"""`nodecli train` end to end, through the installed command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, run_dirs

LINE = re.compile(
    r"^\[(\d+)/(\d+)\]\tTime \d+\.\d{4}s\t"
    r"Training Accuracy: \d+\.\d{5}%\tTest Accuracy: \d+\.\d{5}%$"
)


def epoch_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if LINE.match(line)]


@pytest.mark.slow
def test_train_prints_reference_lines_and_writes_record(cli, tmp_path: Path) -> None:
    result = cli("train", "train.epochs=2", "data.n=300", "train.batch_size=64")
    assert result.returncode == 0, result.stderr
    lines = epoch_lines(result.stdout)
    assert [LINE.match(line).groups() for line in lines] == [("1", "2"), ("2", "2")]
    (run_dir,) = run_dirs(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["epochs_completed"] == 2
    assert {"python", "torch", "torchdiffeq", "nodecli"} <= set(info["versions"])
    assert info["threads"] == 1 and info["device"] == "cpu"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert (metrics["nfe_forward"] > 0).all() and (metrics["nfe_backward"] > 0).all()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert not (tmp_path / "train.log").exists()


@pytest.mark.slow
def test_same_command_twice_gives_identical_metrics(cli, tmp_path: Path) -> None:
    for _ in range(2):
        assert cli("train", *TINY, "train.epochs=2").returncode == 0
    first, second = (pd.read_csv(d / "metrics.csv") for d in run_dirs(tmp_path))
    assert len(run_dirs(tmp_path)) == 2
    columns = ["train_loss", "train_acc", "test_acc", "nfe_forward", "nfe_backward"]
    pd.testing.assert_frame_equal(first[columns], second[columns])


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "sensealg=nope",
            "valid sensealg options: adjoint, checkpoint, direct, gauss, interpolating",
        ),
        ("solver=nope", "valid solver options: bosh3, dopri5, dopri8, euler, midpoint, rk4, tsit5"),
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("train.epochs=abc", "train.epochs=abc is not a valid integer"),
        ("train.epochs=0", "train.epochs=0 is out of range"),
        ("data.split=1.5", "data.split=1.5 is out of range"),
        ("data.n=999999", "data.n=999999 is larger than the 5000 digits"),
        ("device=cuda", "device=cuda is not available"),
        ("device=mps", "device=mps is not available"),
        ("train.batch_size=0", "train.batch_size=0 is out of range"),
        ("train.lr=-0.1", "train.lr=-0.1 is out of range"),
        ("solver.rtol=0", "solver.rtol=0.0 is out of range"),
        ("solver.atol=-1", "solver.atol=-1.0 is out of range"),
        ("data.n=1", "data.n=1 is out of range"),
        ("data.n=3", "leaves an empty train or test set"),
        ("train=3", "'train' is a section, not a value; set one of its keys: train.epochs"),
        ("solver", "'solver' needs an option"),
        ("seed==1", "malformed override"),
        ("+train.foo=1", "unknown config key 'train.foo'"),
        ("--cfg=bogus", "invalid choice"),
        ("--multirun", "use `nodecli sweep`"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, override, expected
) -> None:
    """In process: every case is refused before Hydra runs, so no subprocess is needed."""
    import torch

    from nodecli import cli

    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if override == "device=mps" and torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", override])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_hydra_help_lists_groups_and_options(cli) -> None:
    result = cli("train", "--help")
    assert result.returncode == 0
    for group in ("sensealg", "solver", "device", "layer_style", "dataset"):
        assert f"{group}:" in result.stdout
    assert "tsit5" in result.stdout and "adjoint" in result.stdout


@pytest.mark.slow
def test_cfg_job_prints_composed_config(cli, tmp_path) -> None:
    result = cli("train", "--cfg", "job", "sensealg=adjoint", "solver=dopri5")
    assert result.returncode == 0, result.stderr
    assert "name: adjoint" in result.stdout and "method: dopri5" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_unknown_command_exits_2(capsys) -> None:
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trian"])
    assert exit_info.value.code == 2 and "valid commands" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_train_on_cuda(cli, tmp_path) -> None:
    result = cli("train", *TINY, "device=cuda", "sensealg=adjoint")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "run.json").read_text())["device"].startswith("cuda")
    assert pd.read_csv(run_dir / "metrics.csv")["peak_memory_bytes"].iloc[0] > 0


@pytest.mark.slow
def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    import subprocess

    from conftest import cpu_env, nodecli_command

    procs = [
        subprocess.Popen(
            [*nodecli_command(), "train", *TINY],
            cwd=tmp_path,
            env=cpu_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2
    for run_dir in dirs:
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
