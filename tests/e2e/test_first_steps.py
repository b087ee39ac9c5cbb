"""A newcomer's first commands: `make demo` says how to run nodecli next, `nodecli
backends` reads as a table on a terminal and as Markdown where it is pasted, and a
listing cut short by its reader (`| head -n 1`) ends quietly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import nodecli_command
from report_records import three_by_two

from nodecli import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_ends_by_saying_how_to_run_nodecli_next() -> None:
    # -n: the commands only; -o: as if installed (no venv is built here)
    done = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    after_training = done.stdout.split(".venv/bin/nodecli train", 1)[1]
    assert "source .venv/bin/activate" in after_training
    assert ".venv/bin/nodecli report" in after_training


def backends(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["backends", *args])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    return out


def test_backends_is_a_table_on_request_and_markdown_in_a_pipe(capsys) -> None:
    table = backends(capsys, "--format", "rich")
    assert "┃ sensealg" in table and "| --- |" not in table
    assert "NeuralODE(sensitivity='interpolated_adjoint')" in table
    piped = backends(capsys)  # capsys is no terminal
    assert "| sensealg | nodecli |" in piped and "| --- |" in piped
    assert backends(capsys, "--markdown") == piped


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["report", "RUNS"],
        ["report", "RUNS", "--format", "markdown"],
        ["report", "RUNS", "--format", "csv"],
        ["report", "RUNS", "--epochs"],
        ["backends", "--format", "rich"],
        ["train", "--help"],
    ],
    ids=lambda a: "-".join(a).replace("RUNS", "runs"),
)
def test_a_reader_that_stops_early_ends_the_listing_quietly(tmp_path: Path, args) -> None:
    if "RUNS" in args:  # more copies add runs to the same groups, not lines to the listing
        three_by_two(tmp_path / "s0")
    command = [*nodecli_command(), *(str(tmp_path) if a == "RUNS" else a for a in args)]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert writer.stdout is not None and writer.stderr is not None
    # The reader is gone before the first line (`| head -n 0`): every listing is smaller
    # than a pipe's buffer, so a reader that read a line first could close after the
    # writer had finished, and the closed pipe would go untested.
    writer.stdout.close()
    err = writer.stderr.read().decode(sys.getdefaultencoding(), "replace")
    code = writer.wait(timeout=120)
    # 128 + SIGPIPE, as a shell command's; `train` (--help included) goes on without its
    # reader, as a training run must (signals.output_never_stops_work), and exits 0.
    assert code == (0 if args[0] == "train" else 141), (code, err)
    assert "Traceback" not in err and "Error" not in err, err
