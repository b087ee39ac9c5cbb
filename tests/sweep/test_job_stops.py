"""Stopping sweep jobs: SIGTERM passed on to job processes, a submitit time limit closing the
record first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import TINY

from nodecli.config.compose import compose_config


def test_sigterm_to_a_sweep_is_passed_on_to_its_job_processes(tmp_path: Path) -> None:
    """SIGTERM to `nodecli sweep` alone killed it and left joblib/submitit jobs training,
    orphaned; ForwardStop passes it on to the child processes and records it."""
    import signal
    import subprocess
    import sys

    from nodecli.signals import ForwardStop, child_pids

    seen = tmp_path / "seen"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(seen)!r})"
            ".write_text('TERM'), sys.exit(0)))\n"
            "print('ready', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert child.pid in child_pids()
        with ForwardStop() as forward:
            os.kill(os.getpid(), signal.SIGTERM)
            assert child.wait(timeout=10) == 0
        assert forward.signum == signal.SIGTERM
        assert seen.read_text() == "TERM"
        assert signal.getsignal(signal.SIGTERM) is not forward._handle  # restored
    finally:
        child.kill()
        child.wait()


def test_submitit_time_limit_signal_closes_the_record_before_its_handler_runs(
    tmp_path: Path, monkeypatch
) -> None:
    """submitit's SIGUSR2 handler (SLURM's time-limit / preemption warning) requeues the
    job and calls sys.exit at once: mid-batch, with the record left saying "running".
    The run now stops at the batch boundary, records `interrupted`, then runs it."""
    import signal

    from nodecli.record.read import read_run_json
    from nodecli.train.loop import Trackers, run_experiment

    calls: list[str] = []

    def submitit_like(signum: int, frame: object) -> None:
        calls.append(read_run_json(tmp_path / "run")["status"])
        raise SystemExit(-1)

    def log_epoch(self: Trackers, row: dict) -> None:
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(Trackers, "log_epoch", log_epoch)
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            run_experiment(compose_config([*TINY, "train.epochs=3"]), tmp_path / "run", [])
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # restored
    finally:
        signal.signal(signal.SIGUSR2, previous)
    info = read_run_json(tmp_path / "run")
    assert calls == ["interrupted"]  # the handler ran once, after the record was closed
    assert info["status"] == "interrupted" and info["epochs_completed"] == 1
