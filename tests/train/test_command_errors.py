"""File-system and solver errors of train, sweep and gradcheck: one line and the right exit
code, before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY, run_main


@pytest.mark.parametrize(
    "args, make, expected",
    [
        (["train", *TINY], lambda: Path("outputs").write_text(""), "cannot write outputs/runs"),
        (["train", *TINY, "hydra.run.dir=f/run"], lambda: Path("f").write_text(""), "f/run"),
        (["sweep", "seed=0,1", *TINY], lambda: Path("outputs").write_text(""), "outputs"),
        (["sweep", "seed=range(0,0)"], lambda: None, "has no jobs"),
        (
            ["gradcheck", "--methods", "direct", "--out", "g", *TINY],
            lambda: Path("g").write_text(""),
            "cannot write g",
        ),
    ],
    ids=["outputs-is-a-file", "run-dir-under-a-file", "sweep-outputs-file", "zero-jobs", "gc-out"],
)
def test_file_system_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch, capsys, args, make, expected
) -> None:
    monkeypatch.chdir(tmp_path)
    make()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = run_main(args, capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_read_only_folder_is_one_line_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    monkeypatch.chdir(tmp_path)
    tmp_path.chmod(0o555)
    try:
        code, err = run_main(["train", *TINY], capsys)
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and "Permission denied" in err and len(err.strip().splitlines()) == 1


def test_gradcheck_solver_failure_is_one_line_exit_1(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["gradcheck", "--methods", "direct", "--repeats", "1", "solver.max_steps=1", *TINY]
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    code, out = exit_info.value.code, capsys.readouterr().out
    assert code == 1 and "gradcheck failed" in out and "solver.max_steps" in out, out


def test_readme_gradcheck_example_with_a_key_direct_refuses(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The reference (direct) gets only the sensealg.* keys direct accepts, like each method."""
    monkeypatch.chdir(tmp_path)
    args = ["gradcheck", "model.t1=16", "--methods=adjoint,gauss", "sensealg.seminorm=true",
            "--repeats=1", "--out", "g", "data.n=200", "train.batch_size=8"]  # fmt: skip
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    report = json.loads((tmp_path / "g" / "gradcheck.json").read_text())
    assert [r["sensealg"] for r in report["methods"]] == ["adjoint", "gauss"]
    assert report["config"]["sensealg"] == {"name": "direct"}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--max-rel-error", "nan"], "--max-rel-error=nan is out of range"),
        (["--max-rel-error", "inf"], "--max-rel-error=inf is out of range"),
        (["--max-rel-error", "-1"], "--max-rel-error=-1.0 is out of range"),
        (["--ref-tol", "inf"], "--ref-tol=inf is out of range"),
        (["--methods", "direct", "sensealg.seminorm=true"], "applies to none of the checked"),
        (["sensealg.seminrm=true"], "did you mean 'sensealg.seminorm'"),
        (["sensealg=nope"], "sensealg=nope is not an option"),
        (["backend=torchdyn"], "backend=torchdyn is not used here"),
    ],
)
def test_gradcheck_refuses_values_that_cannot_work(
    tmp_path: Path, monkeypatch, capsys, args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["gradcheck", *args], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_each_train_command_exits_with_its_own_code(cli_here) -> None:
    """`--cfg job` runs no training: in a process whose earlier `nodecli train` failed
    (exit 1), it must still exit 0, not with the earlier run's code."""
    failed = cli_here("train", "train.lr=1e36", "data.n=300", "train.epochs=1")
    assert failed.returncode == 1, failed.stderr
    shown = cli_here("train", "--cfg", "job", "seed=3")
    assert shown.returncode == 0, shown.stderr
    assert "seed: 3" in shown.stdout
