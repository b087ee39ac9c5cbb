"""A closed stdout or stderr never fails a run or a sweep; stop signals, SIGHUP included,
end a run as interrupted, and a stop inside a batch is honoured at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, cpu_env, nodecli_command

from nodecli.signals import GracefulStop, StopRequested, output_never_stops_work
from nodecli.train.loop import failure_message


def closed_pipe() -> int:
    """A write end whose reader is gone: writing to it raises BrokenPipeError."""
    read, write = os.pipe()
    os.close(read)
    return write


def test_a_closed_stdout_is_replaced_by_devnull_and_printing_goes_on() -> None:
    fd = closed_pipe()
    saved = sys.stdout
    sys.stdout = open(fd, "w", buffering=1)  # noqa: SIM115 - closed below
    try:
        with output_never_stops_work():
            print("first line", flush=True)  # EPIPE: the stream now points at /dev/null
            print("second line", flush=True)
            assert sys.stdout.closed_pipe  # type: ignore[attr-defined]
        sys.stdout.flush()  # the restored stream is quiet too
    finally:
        sys.stdout.close()
        sys.stdout = saved


def test_outside_the_context_a_closed_pipe_still_raises() -> None:
    stream = open(closed_pipe(), "w")  # noqa: SIM115 - its close raises too
    with pytest.raises(BrokenPipeError):
        stream.write("x\n")
        stream.flush()
    os.close(stream.fileno())


def test_sighup_is_a_stop_like_sigterm() -> None:
    with GracefulStop() as stopper:
        signal.raise_signal(signal.SIGHUP)
        with pytest.raises(StopRequested) as caught:
            stopper.check()
    assert caught.value.exit_code == 128 + signal.SIGHUP


def test_a_stop_inside_a_batch_is_raised_at_once() -> None:
    with GracefulStop() as stopper:
        with pytest.raises(StopRequested), stopper.immediate():
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("the stop should have been raised by the signal")
        assert stopper.signum == signal.SIGTERM


def test_a_memory_error_is_recorded_with_a_reason() -> None:
    message = failure_message(MemoryError())
    assert message.startswith("out of memory (MemoryError)")
    assert "train.batch_size" in message


def run_json(root: Path) -> dict:
    (path,) = root.glob("outputs/runs/*/*/run.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_train_into_a_closed_pipe_completes_its_record(tmp_path: Path) -> None:
    """`nodecli train … | head -n 1`: the run failed with "Broken pipe" (exit 1)."""
    env = {**cpu_env(), "PYTHONUNBUFFERED": "1"}
    args = [*nodecli_command(), "train", "train.epochs=3", "data.n=100"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `head -n 1` does
    assert proc.wait(timeout=300) == 0
    info = run_json(tmp_path)
    assert info["status"] == "completed" and info["epochs_completed"] == 3


@pytest.mark.slow
def test_sighup_marks_the_record_interrupted(tmp_path: Path) -> None:
    env = {**cpu_env(), "PYTHONUNBUFFERED": "1"}
    args = [*nodecli_command(), "train", "train.epochs=200", "data.n=200"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # epoch 1 is done: the run is training
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP, err
    info = run_json(tmp_path)
    assert info["status"] == "interrupted" and "SIGHUP" in info["error"]


@pytest.mark.slow
def test_out_of_memory_is_a_failed_record_with_a_reason(tmp_path: Path) -> None:
    """Under `ulimit -v` the run died with `MemoryError: ` and run.json said running."""
    shell = " ".join([*nodecli_command(), "train", *TINY, "train.batch_size=180"])
    done = subprocess.run(
        ["bash", "-c", f"ulimit -v 3500000; exec {shell} model.t1=100000"],
        cwd=tmp_path,
        env=cpu_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    info = run_json(tmp_path)
    assert info["status"] == "failed" and info["error"].startswith("out of memory"), info
