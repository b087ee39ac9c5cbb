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

import pytest
from conftest import nodecli_command, run_cli
from slurm_cluster import missing_binaries, start_cluster

pytestmark = pytest.mark.slow

TINY = ["train.epochs=1", "data.n=200", "train.batch_size=64", "device=cpu"]
SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10"]


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


def test_submitit_slurm_sweep_completes_and_reports(cluster, tmp_path: Path) -> None:
    result = run_cli(["sweep", "sensealg=direct,adjoint", *TINY, *SLURM], tmp_path, env=cluster.env)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = sweep_dir_of(tmp_path)
    jobs = job_dirs(sweep_dir)
    assert [record(j)["status"] for j in jobs] == ["completed", "completed"]
    # The jobs really ran under SLURM: submitit keeps one folder per SLURM job id.
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) >= 2
    report = run_cli(["report", str(sweep_dir), "--format", "csv"], tmp_path)
    assert report.returncode == 0, report.stderr
    assert "direct" in report.stdout and "adjoint" in report.stdout


def test_cancelled_job_is_not_completed_and_resume_reruns_it(cluster, tmp_path: Path) -> None:
    # Small batches make each epoch last about a second, so scancel lands mid-training.
    long_job = ["train.epochs=4", "data.n=5000", "train.batch_size=16", "device=cpu"]
    env = {**os.environ, **cluster.env, "COLUMNS": "200"}
    sweep = subprocess.Popen(
        [*nodecli_command(), "sweep", "seed=0", *long_job, *SLURM],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        job_dir = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("outputs/sweeps/*/*/0_*/run.json"))
            if found and json.loads(found[0].read_text()).get("epochs_completed", 0) >= 1:
                job_dir = found[0].parent
                break
            time.sleep(0.2)
        assert job_dir is not None, "the SLURM job never finished an epoch"
        (job_id,) = [j for j, state in cluster.jobs().items() if state == "RUNNING"]
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
