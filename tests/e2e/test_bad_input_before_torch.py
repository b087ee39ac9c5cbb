"""A bad command line is refused before the heavy libraries load: torch (seconds),
pandas and matplotlib (a report's). Checked through Python's import log
(PYTHONPROFILEIMPORTTIME), not by timing: what is never imported costs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from nodecli.config.environment import cuda_driver_present

HEAVY = ("torch", "pandas", "matplotlib", "torchvision", "mlxtend")


def imported(stderr: str) -> set[str]:
    """Top-level modules named in the import log on STDERR."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


BAD_COMMAND_LINES = {
    "train-flag": (["train", "--bogus"], "unrecognized arguments: --bogus"),
    "train-key": (["train", "train.epoch=3"], "did you mean 'train.epochs'"),
    "train-value": (["train", "train.lr=abc"], "train.lr=abc is not a valid float"),
    "train-empty-split": (["train", "data.n=2"], "leaves an empty train or test set"),
    "train-too-many-digits": (["train", "data.n=20000"], "larger than the 5000 digits"),
    "sweep-flag": (["sweep", "--bogus"], "unrecognized arguments: --bogus"),
    "sweep-key": (["sweep", "nope=1,2"], "unknown config key 'nope'"),
    "sweep-value": (["sweep", "train.lr=-1,0.1"], "train.lr=-1"),
    "sweep-empty-split": (["sweep", "data.n=2,3"], "leaves an empty train or test set"),
    "report-flag": (["report", "--bogus"], "unrecognized arguments: --bogus"),
    "report-value": (["report", "--stale-after=-1"], "--stale-after=-1 is out of range"),
    "report-path": (["report", "no/such/folder"], "no/such/folder: no such file or directory"),
    "report-empty": (["report", "."], "no run records found under ."),
    "report-format": (["report", "--format", "html"], "invalid choice: 'html'"),
    "gradcheck-flag": (["gradcheck", "--bogus"], "unknown option --bogus"),
    "gradcheck-dtype": (["gradcheck", "--dtype", "float16"], "invalid choice: 'float16'"),
    "gradcheck-method": (["gradcheck", "--methods", "adjoint,nope"], "unknown method 'nope'"),
    "gradcheck-key": (["gradcheck", "train.epoch=3"], "did you mean 'train.epochs'"),
    "gradcheck-value": (["gradcheck", "solver.rtol=1e-300"], "runs in float32"),
    "gradcheck-split": (["gradcheck", "data.n=2"], "leaves an empty train or test set"),
    "backends-flag": (["backends", "--bogus"], "unrecognized arguments: --bogus"),
    "backends-format": (["backends", "--format", "html"], "invalid choice: 'html'"),
    "command": (["tarin"], "unknown command 'tarin'"),
    "train-model": (["train", "model=nope"], "model=nope"),
    "train-field-target": (
        ["train", "model=custom", "model.field._target_=no.such.Field"],
        "does not import (no module named 'no')",
    ),
}
if not cuda_driver_present():  # elsewhere device=cuda is valid and would train
    BAD_COMMAND_LINES["train-cuda"] = (
        ["train", "device=cuda"],
        "device=cuda is not available on this machine",
    )


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", BAD_COMMAND_LINES.values(), ids=list(BAD_COMMAND_LINES))
def test_a_bad_command_line_is_one_line_exit_2_without_torch_or_pandas(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    done = run_cli(args, tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    lines = messages(done.stderr)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("nodecli: error:"), lines
    assert expected in lines[0]
    assert not imported(done.stderr) & set(HEAVY), imported(done.stderr) & set(HEAVY)
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_nodecli_torch_and_python_without_importing_torch(
    tmp_path: Path, flag: str
) -> None:
    import platform

    from nodecli.record.provenance import dist_version

    done = run_cli([flag], tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("nodecli ")
    assert f"torch {dist_version('torch')}" in done.stdout
    assert f"Python {platform.python_version()}" in done.stdout
    assert "torch" not in imported(done.stderr)
