"""Hand-made run records for report tests: one run's files (`make_run`), a 3 sensealg ×
2 seed study (`three_by_two`), and `nodecli report` run in process (`report`)."""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nodecli import cli

COLUMNS = (
    "epoch,train_time_s,train_loss,train_acc,test_acc,nfe_forward,nfe_backward,peak_memory_bytes"
)


def iso(seconds_ago: float = 0.0) -> str:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return moment.isoformat(timespec="milliseconds")


def make_run(
    root: Path,
    name: str,
    sensealg: str = "direct",
    seed: int = 0,
    status: str = "completed",
    times: tuple[float, ...] = (2.0, 1.0, 1.2, 0.8),
    accs: tuple[float, ...] = (50.0, 60.0, 70.0, 80.0),
    solver: str = "tsit5",
    memory: float | str = "",
    heartbeat_ago: float = 1.0,
    pid: int | None = None,
    extra_columns: str = "",
) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\nresume: null\nsolver:\n  method: {solver}\n  rtol: 0.001\n"
        f"sensealg:\n  name: {sensealg}\ntrain:\n  epochs: 4\n  lr: 0.001\n"
    )
    lines = [COLUMNS + extra_columns]
    for epoch, (t, acc) in enumerate(zip(times, accs, strict=True), start=1):
        extra = ",123" if extra_columns else ""
        lines.append(f"{epoch},{t},1.0,{acc - 5},{acc},100,{200 + seed},{memory}{extra}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    info = {
        "status": status,
        "error": "SolverError: boom" if status == "failed" else None,
        "started_at": iso(heartbeat_ago + 10),
        "ended_at": None if status == "running" else iso(heartbeat_ago),
        "heartbeat_at": iso(heartbeat_ago),
        "device": "cpu",
        "threads": 1,
        "host": socket.gethostname(),
        "pid": os.getpid() if pid is None else pid,
    }
    (run / "run.json").write_text(json.dumps(info))
    return run


def three_by_two(root: Path) -> None:
    """3 sensealgs × 2 seeds; direct is twice as slow as adjoint, gauss as fast as direct."""
    speeds = {"direct": 1.0, "adjoint": 0.5, "gauss": 1.0}
    for sensealg, factor in speeds.items():
        for seed in (0, 1):
            times = tuple(t * factor + 0.1 * seed for t in (2.0, 1.0, 1.2, 0.8))
            accs = tuple(a + 2 * seed for a in (50.0, 60.0, 70.0, 80.0))
            make_run(root, f"{sensealg}-{seed}", sensealg, seed, times=times, accs=accs)


def report(capsys, *args: str) -> tuple[int, str, str]:
    """Run `nodecli report ARGS` in this process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err
