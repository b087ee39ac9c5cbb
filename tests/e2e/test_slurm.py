"""`nodecli sweep hydra/launcher=submitit_slurm` against a real, private SLURM cluster.

The cluster (tests/slurm_cluster.py) needs Debian's slurm-wlm and munge and root; the
tests skip cleanly without them. `.ci/run` installs both when it runs as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import cpu_env, nodecli_command, run_cli
from slurm_cluster import missing_binaries, start_cluster

pytestmark = pytest.mark.slow

TINY = ["train.epochs=1", "data.n=200", "train.batch_size=64", "device=cpu"]
SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10"]
# Small batches make each epoch last about a second, so scancel / requeue land mid-training.
LONG_JOB = ["seed=0", "train.epochs=4", "data.n=5000", "train.batch_size=16", "device=cpu"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        needs = "apt-get install slurm-wlm munge"
        pytest.skip(f"SLURM binaries missing ({', '.join(missing)}): {needs}")
    if os.geteuid() != 0:
        pytest.skip("a private SLURM cluster needs root (slurmd runs jobs as their user)")
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.close()


def sweep_dir_of(root: Path) -> Path:
    (found,) = [p.parent for p in root.glob("outputs/sweeps/*/*/sweep.json")]
    return found


def job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = (p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def record(job_dir: Path) -> dict:
    return json.loads((job_dir / "run.json").read_text())


def test_submitit_slurm_sweep_completes_and_reports(cluster, tmp_path: Path, cli_here) -> None:
    result = run_cli(["sweep", "sensealg=direct,adjoint", *TINY, *SLURM], tmp_path, env=cluster.env)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = sweep_dir_of(tmp_path)
    jobs = job_dirs(sweep_dir)
    assert [record(j)["status"] for j in jobs] == ["completed", "completed"]
    # The jobs really ran under SLURM: submitit keeps one folder per SLURM job id.
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) >= 2
    report = cli_here("report", str(sweep_dir), "--format", "csv")  # needs no process
    assert report.returncode == 0, report.stderr
    assert "direct" in report.stdout and "adjoint" in report.stdout


def test_cancelled_job_is_not_completed_and_resume_reruns_it(cluster, tmp_path: Path) -> None:
    sweep = start_long_sweep(cluster, tmp_path)
    try:
        job_dir, job_id = running_job(cluster, tmp_path)
        cluster.run("scancel", job_id)
        output, _ = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode != 0, output
    cancelled = record(job_dir)
    assert cancelled["status"] in ("interrupted", "failed"), cancelled
    assert cancelled["epochs_completed"] < 4
    summary = output.split("nodecli sweep:")[-1]
    assert cancelled["status"] in summary and "all 1 job(s) completed" not in summary, output

    sweep_dir = sweep_dir_of(tmp_path)
    resumed = run_cli(["sweep", f"sweep.resume={sweep_dir}"], tmp_path, env=cluster.env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = record(job_dir)
    assert done["status"] == "completed" and done["epochs_completed"] == 4
    assert len((job_dir / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_requeued_job_resumes_and_trains_no_epoch_twice(cluster, tmp_path: Path, cli_here) -> None:
    sweep = start_long_sweep(cluster, tmp_path)
    try:
        job_dir, job_id = running_job(cluster, tmp_path)
        cluster.run("scontrol", "requeue", job_id)
        release_requeued(cluster, job_id)
        output, _ = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, output
    done = record(job_dir)
    assert done["status"] == "completed" and done["epochs_completed"] == 4, done
    logs = "".join(p.read_text() for p in job_dir.parent.glob(".submitit/*/*_log.out"))
    assert "restarted by the scheduler: continuing after epoch" in logs, logs
    # The same experiment without interruption (in this process: it needs none of its
    # own): every number but the times is equal.
    plain = tmp_path / "plain"
    result = cli_here("train", "seed=0", *LONG_JOB, f"hydra.run.dir={plain / 'run'}")
    assert result.returncode == 0, result.stderr
    requeued = pd.read_csv(job_dir / "metrics.csv")
    straight = pd.read_csv(plain / "run" / "metrics.csv")
    assert requeued["epoch"].tolist() == [1, 2, 3, 4]  # no finished epoch trained twice
    same = [c for c in straight.columns if not c.endswith("time_s")]
    pd.testing.assert_frame_equal(requeued[same], straight[same])


def start_long_sweep(cluster, root: Path) -> subprocess.Popen:
    """A one-job LONG_JOB sweep on the cluster, in the background."""
    return subprocess.Popen(
        [*nodecli_command(), "sweep", *LONG_JOB, *SLURM],
        cwd=root,
        env=cpu_env(**{**cluster.env, "COLUMNS": "200"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def running_job(cluster, root: Path) -> tuple[Path, str]:
    """(job folder, SLURM job id) once the sweep's job has finished its first epoch."""
    job_dir = wait_for_epoch(root, 1)
    (job_id,) = [j for j, state in cluster.jobs().items() if state == "RUNNING"]
    return job_dir, job_id


def wait_for_epoch(root: Path, epochs: int, timeout: float = 120) -> Path:
    """The first sweep job's folder once its record holds EPOCHS finished epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in root.glob("outputs/sweeps/*/*/0_*/run.json"):
            try:
                if json.loads(path.read_text()).get("epochs_completed", 0) >= epochs:
                    return path.parent
            except ValueError:  # caught mid-write by a non-atomic reader: look again
                pass
        time.sleep(0.2)
    raise AssertionError(f"no sweep job finished {epochs} epoch(s) in {timeout} s")


def release_requeued(cluster, job_id: str, timeout: float = 60) -> None:
    """SLURM holds a requeued job for ~2 minutes (BeginTime): once it is pending again,
    make it eligible now, so the test does not wait for that delay."""
    deadline = time.monotonic() + timeout
    refused = ""
    while time.monotonic() < deadline:
        state = cluster.jobs().get(job_id)
        if state == "PENDING":
            try:
                cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
            except subprocess.CalledProcessError as exc:  # still completing its requeue
                refused = f" (last refusal: {exc.stderr.strip()})"
        elif state == "RUNNING" and _restarts(cluster, job_id) >= 1:
            return
        time.sleep(0.3)
    raise AssertionError(f"requeued job {job_id} did not start again in {timeout} s{refused}")


def _restarts(cluster, job_id: str) -> int:
    out = cluster.run("scontrol", "-o", "show", "job", job_id)
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return int(fields.get("Restarts", "0"))
