"""`nodecli train` end to end, through the installed command."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from subprocess import PIPE

import pandas as pd
import pytest
from conftest import TINY, cpu_env, nodecli_command, run_dirs

LINE = re.compile(
    r"^\[(\d+)/(\d+)\]\tTime \d+\.\d{4}s\t"
    r"Training Accuracy: \d+\.\d{5}%\tTest Accuracy: \d+\.\d{5}%$"
)


def epoch_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if LINE.match(line)]


@pytest.fixture(scope="module")
def two_at_once(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """The same 2-epoch command started twice at once in one folder (so in the same
    second), shared by the tests that only read those runs: (folder, both results)."""
    root = tmp_path_factory.mktemp("two")
    args = [*nodecli_command(), "train", *TINY[1:], "train.epochs=2"]
    env = cpu_env(PYTHONUNBUFFERED="1", COLUMNS="200")
    procs = [
        subprocess.Popen(args, cwd=root, env=env, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return root, results


@pytest.mark.slow
def test_train_prints_reference_lines_and_writes_record(two_at_once) -> None:
    root, results = two_at_once
    for result in results:
        assert result.returncode == 0, result.stderr
        lines = epoch_lines(result.stdout)
        assert [LINE.match(line).groups() for line in lines] == [("1", "2"), ("2", "2")]
    for run_dir in run_dirs(root):
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
    assert not (root / "train.log").exists()


@pytest.mark.slow
def test_same_command_twice_gives_identical_metrics(two_at_once) -> None:
    root, results = two_at_once
    assert [result.returncode for result in results] == [0, 0], results
    assert len(run_dirs(root)) == 2
    first, second = (pd.read_csv(d / "metrics.csv") for d in run_dirs(root))
    columns = ["train_loss", "train_acc", "test_acc", "nfe_forward", "nfe_backward"]
    pd.testing.assert_frame_equal(first[columns], second[columns])


@pytest.mark.slow
def test_runs_started_in_the_same_second_get_their_own_folders(two_at_once) -> None:
    root, results = two_at_once
    for result in results:
        assert result.returncode == 0, result.stderr
    dirs = run_dirs(root)
    assert len(dirs) == 2
    for run_dir in dirs:
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


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


def test_cfg_job_prints_composed_config(cli_here, tmp_path) -> None:
    result = cli_here("train", "--cfg", "job", "sensealg=adjoint", "solver=dopri5")
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
