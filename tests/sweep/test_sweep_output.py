"""A sweep prints one line per job and its summary (each job's epoch lines and table with
sweep.verbose=true), and a closed stdout never stops its jobs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cpu_env, nodecli_command

from nodecli import cli

JOBS = ["seed=0,1", "train.epochs=2", "data.n=100", "hydra.sweep.dir=sw"]


def sweep(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code), out, err


def test_a_sweep_is_quiet_by_default_and_verbose_on_request(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = sweep(JOBS, capsys)
    assert code == 0
    assert "Training Accuracy" not in out and "per-epoch results" not in out, out
    assert out.count("started:") == 2 and "all 2 job(s) completed" in out
    code, out, _ = sweep([*JOBS[:-1], "hydra.sweep.dir=sw2", "sweep.verbose=true"], capsys)
    assert code == 0
    assert out.count("[2/2]\tTime") == 2 and out.count("per-epoch results") == 2, out


def test_sweep_verbose_takes_a_boolean(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = sweep([*JOBS, "sweep.verbose=loud"], capsys)
    assert code == 2 and "sweep.verbose=true or false" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_a_sweep_into_a_closed_pipe_runs_every_job_and_its_summary(tmp_path: Path) -> None:
    """`nodecli sweep … | head -n 2` never ran job 1 and wrote no summary (exit 141)."""
    args = [*nodecli_command(), "sweep", *JOBS]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cpu_env(), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.readline()
    proc.stdout.close()  # as `head -n 2` does
    assert proc.wait(timeout=300) == 0
    plan = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    statuses = [
        json.loads(p.read_text())["status"] for p in sorted((tmp_path / "sw").glob("*/run.json"))
    ]
    assert statuses == ["completed", "completed"] and plan["n_jobs"] == 2
