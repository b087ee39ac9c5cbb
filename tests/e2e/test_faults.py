"""Fault injection for issue 11 ("nothing lost"): concurrent writers on one folder,
SIGKILL at random points then resume, damaged record files, a full file system.

Every case must end with exit 0, 1 (record `failed`) or 2 (one line, record untouched),
never a traceback, and every record must stay consistent. The counts (runs attempted,
faults injected, records lost or inconsistent) are written to $NODECLI_FAULT_REPORT when
it is set (run this file without -n then: each pytest-xdist worker counts its own).
Races and kills run `nodecli` in subprocesses (slow); what needs no process of its own
(the runs a race or kill starts from, the resumes after a kill, damaged records, full or
read-only file systems) runs `nodecli` in this one.
NODECLI_FAULT_SCALE=N repeats each race and kill N times as often (a soak).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, cpu_env, nodecli_command, run_main
from fake_records import DAMAGE, DEAD_PID, snapshot, write_record

from nodecli.record.ownership import release_folder
from nodecli.record.read import read_metrics, read_run_json

# NODECLI_FAULT_SCALE=3 runs three times the rounds (a longer soak than the suite's).
SCALE = max(1, int(os.environ.get("NODECLI_FAULT_SCALE", "1")))
COUNTS = {"runs_attempted": 0, "faults_injected": 0, "records_lost_or_inconsistent": 0}
SLOW = ["data.n=600", "solver.rtol=1e-7", "solver.atol=1e-7", "train.batch_size=64"]


@pytest.fixture(scope="module", autouse=True)
def fault_report():
    yield
    target = os.environ.get("NODECLI_FAULT_REPORT")
    if target:
        Path(target).write_text(json.dumps(COUNTS, indent=2) + "\n")


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    COUNTS["runs_attempted"] += 1
    env = cpu_env(PYTHONUNBUFFERED="1", COLUMNS="200")
    return subprocess.Popen(
        [*nodecli_command(), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def consistent(run_dir: Path, epochs: int | None = None) -> bool:
    """run.json, metrics.csv and checkpoint.pt agree (and, if given, EPOCHS are done);
    an inconsistent record is counted, then the test fails on it."""
    try:
        info = read_run_json(run_dir)
        rows = read_metrics(run_dir)["epoch"].tolist()
        saved = 0
        if (run_dir / "checkpoint.pt").exists():
            saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
        ok = rows == list(range(1, len(rows) + 1)) and saved <= info["epochs_completed"]
        ok = ok and info["epochs_completed"] <= len(rows) <= saved + 1
        if info["status"] == "completed":
            ok = ok and info["epochs_completed"] == len(rows) == saved
        if epochs is not None:
            ok = ok and info["status"] == "completed" and len(rows) == epochs
    except (ValueError, OSError, KeyError):
        ok = False
    if not ok:
        COUNTS["records_lost_or_inconsistent"] += 1
    return ok


@pytest.fixture
def nodecli_here(monkeypatch, capsys):
    """Call as nodecli_here(args, cwd) → (exit code, stderr): `nodecli ARGS` run in this
    process inside CWD, as the subprocess would run it."""

    def call(args: list[str], cwd: Path) -> tuple[int, str]:
        COUNTS["runs_attempted"] += 1
        with monkeypatch.context() as patch:  # back out of CWD at once: a mount is unmounted
            patch.chdir(cwd)
            return run_main(args, capsys)

    return call


def one_line(stderr: str) -> bool:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


@pytest.mark.slow
def test_two_trains_into_one_folder_exactly_one_runs(tmp_path: Path) -> None:
    for round_ in range(SCALE):
        target = tmp_path / f"run{round_}"
        procs = [start(["train", *TINY, f"hydra.run.dir={target}"], tmp_path) for _ in range(2)]
        COUNTS["faults_injected"] += 1
        outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        assert sorted(code for code, _, _ in outs) == [0, 2], outs
        (loser_err,) = [err for code, _, err in outs if code == 2]
        assert one_line(loser_err), loser_err
        assert "in use by pid" in loser_err or "already holds a run record" in loser_err
        assert consistent(target, epochs=1)
        assert read_run_json(target)["argv"][:2] == ["nodecli", "train"]  # argv complete


@pytest.mark.slow
def test_two_resumes_of_one_run_exactly_one_trains(tmp_path: Path, nodecli_here) -> None:
    for round_ in range(SCALE):
        target = tmp_path / f"run{round_}"
        code, err = nodecli_here(["train", *TINY, f"hydra.run.dir={target}"], tmp_path)
        assert code == 0, err
        release_folder(target)  # as if its process had ended: free for the two resumes
        epoch_one = (target / "metrics.csv").read_text().splitlines()[:2]
        args = ["train", f"resume={target}", "train.epochs=3"]
        procs = [start(args, tmp_path) for _ in range(2)]
        COUNTS["faults_injected"] += 1
        outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in outs)
        # The loser is refused while the winner runs, or finds all 3 epochs finished.
        assert codes == [0, 2], outs
        (loser_err,) = [err for code, _, err in outs if code == 2]
        assert one_line(loser_err), loser_err
        assert consistent(target, epochs=3)
        assert (target / "metrics.csv").read_text().splitlines()[:2] == epoch_one


@pytest.mark.slow
def test_two_new_sweeps_into_one_folder_exactly_one_runs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ["sweep", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep_dir}"]
    procs = [start([*args[:1], f"seed={n},{n + 1}", *args[2:]], tmp_path) for n in (0, 5)]
    COUNTS["faults_injected"] += 1
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in outs) == [0, 2], outs
    ((winner, _, _),) = [(n, o, e) for n, (c, o, e) in zip((0, 5), outs, strict=True) if c == 0]
    (loser_err,) = [err for code, _, err in outs if code == 2]
    assert one_line(loser_err), loser_err
    stored = json.loads((sweep_dir / "sweep.json").read_text())
    assert stored["job_overrides"][0] == f"seed={winner},{winner + 1}"  # not replaced
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 2 and all(consistent(job, epochs=1) for job in jobs)


def finished_sweep(tmp_path: Path, nodecli_here) -> Path:
    """A finished 2-job sweep, run in this process (only the races need processes) and
    its folders released, as if that process had ended."""
    sweep_dir = tmp_path / "sweep"
    code, err = nodecli_here(["sweep", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    assert code == 0, err
    for folder in [sweep_dir, *sweep_dir.iterdir()]:
        release_folder(folder)
    return sweep_dir


def mark_killed(job_dir: Path) -> None:
    info = json.loads((job_dir / "run.json").read_text())
    info.update(status="running", pid=DEAD_PID, heartbeat_at="2020-01-01T00:00:00+00:00")
    (job_dir / "run.json").write_text(json.dumps(info))


@pytest.mark.slow
def test_concurrent_sweep_resumes_train_every_job_once(tmp_path: Path, nodecli_here) -> None:
    sweep_dir = finished_sweep(tmp_path, nodecli_here)
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    for round_ in range(2 * SCALE):  # the second round finds the first one's attempts/1
        for job in jobs:
            mark_killed(job)
        procs = [start(["sweep", f"sweep.resume={sweep_dir}"], tmp_path) for _ in range(2)]
        COUNTS["faults_injected"] += 1
        outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in outs)
        assert codes in ([0, 0], [0, 2]), outs
        for code, _, err in outs:
            assert code == 0 or (one_line(err) and "in use by pid" in err), err
        started = sum(out.count(") started:") for _, out, _ in outs)
        assert started == len(jobs), outs  # every job taken up exactly once
        continued = sum(out.count("was running: continuing after epoch 1") for _, out, _ in outs)
        assert continued == len(jobs), outs  # a killed job continues its own record
        for job in jobs:
            assert consistent(job, epochs=1)
            assert not (job / "attempts").exists()  # nothing moved aside
            assert len(read_run_json(job)["resumed_at"]) == round_ + 1  # one per round


def kill_train_at_random(
    tmp_path: Path, target: Path, rng: random.Random, in_training: bool
) -> bool:
    """Start a 4-epoch run, SIGKILL it at a random moment (IN_TRAINING: after the record
    appeared, else anywhere, start-up included); False if it finished first."""
    proc = start(["train", *SLOW, "train.epochs=4", f"hydra.run.dir={target}"], tmp_path)
    if in_training:
        deadline = time.monotonic() + 120
        while not (target / "run.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
    else:  # anywhere, start-up included
        time.sleep(rng.uniform(0.0, 4.0))
    proc.kill()
    proc.communicate()
    COUNTS["faults_injected"] += 1
    return proc.returncode != 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path: Path, nodecli_here) -> None:
    rng = random.Random(11)
    for round_ in range(3 * SCALE):  # one kill in every 3 may land in the start-up
        target = tmp_path / f"run{round_}"
        if not kill_train_at_random(tmp_path, target, rng, in_training=round_ % 3 != 0):
            assert consistent(target, epochs=4)
            continue
        # The resumes need no process of their own: they run in this one.
        if not (target / "run.json").exists():  # killed before the record began
            code, err = nodecli_here(["train", f"resume={target}"], tmp_path)
            assert code == 2 and one_line(err), err
            continue
        assert consistent(target)
        if read_run_json(target)["status"] == "completed":  # the kill came after the end
            assert consistent(target, epochs=4)
            continue
        kept = 0
        if (target / "checkpoint.pt").exists():
            kept = torch.load(target / "checkpoint.pt", weights_only=True)["epoch"]
        finished_rows = (target / "metrics.csv").read_text().splitlines()[: kept + 1]
        code, err = nodecli_here(["train", f"resume={target}"], tmp_path)
        assert code == 0, err
        assert consistent(target, epochs=4)
        # Finished (checkpointed) epochs are kept as they were, never retrained.
        assert (target / "metrics.csv").read_text().splitlines()[: kept + 1] == finished_rows


@pytest.mark.slow
def test_sigkill_during_a_sweep_then_resume(tmp_path: Path, nodecli_here) -> None:
    rng = random.Random(5)
    for round_ in range(SCALE):
        sweep_dir = tmp_path / f"sweep{round_}"
        args = ["sweep", "seed=0,1", *SLOW, "train.epochs=3", f"hydra.sweep.dir={sweep_dir}"]
        proc = start(args, tmp_path)
        deadline = time.monotonic() + 120
        while not list(sweep_dir.glob("*/run.json")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.communicate()
        COUNTS["faults_injected"] += 1
        code, err = nodecli_here(["sweep", f"sweep.resume={sweep_dir}"], tmp_path)
        assert code == 0, err
        for job in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()):
            assert consistent(job, epochs=3)


@pytest.mark.parametrize("damage, expected", DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_resume_of_a_damaged_record_exits_2_and_keeps_it(
    tmp_path: Path, nodecli_here, damage, expected
):
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    damage(run_dir)
    COUNTS["faults_injected"] += 1
    before = snapshot(run_dir)
    code, err = nodecli_here(["train", f"resume={run_dir}", "train.epochs=3"], tmp_path)
    assert code == 2 and expected in err, err
    assert one_line(err), err
    if snapshot(run_dir) != before:
        COUNTS["records_lost_or_inconsistent"] += 1
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("sweep_json", ['{"jobs": ', '{"job_overrides": 3}', "[]"])
def test_damaged_sweep_file_without_hydras_files_exits_2(
    tmp_path: Path, nodecli_here, sweep_json
) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(sweep_json)
    COUNTS["faults_injected"] += 1
    code, err = nodecli_here(["sweep", f"sweep.resume={sweep_dir}"], tmp_path)
    assert code == 2 and one_line(err), err
    assert "rebuild the plan" in err
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["sweep.json"]


def mounted_tmpfs(mount: Path, options: str):
    """Mount a tmpfs with OPTIONS at MOUNT for the test (needs root: skipped elsewhere)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    yield mount
    # A failed in-process run may still hold its claim (.nodecli.lock) open: detach then.
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.fixture
def read_only_fs(tmp_path: Path):
    """An empty read-only file system."""
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=64k")


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """320 KiB: room for the record and one checkpoint, not for a second."""
    yield from mounted_tmpfs(tmp_path / "tiny", "size=320k")


@pytest.fixture
def full_fs(tmp_path: Path):
    """12 KiB: Hydra's own .hydra/ files do not fit."""
    yield from mounted_tmpfs(tmp_path / "full", "size=12k")


@pytest.mark.parametrize(
    "args",
    [
        ["train", *TINY],
        ["train", *TINY, "hydra.run.dir=run"],
        ["sweep", "seed=0,1", *TINY],
        ["sweep", "seed=0,1", *TINY, "hydra.sweep.dir=sweep"],
        ["gradcheck", "--methods", "direct", *TINY],
        ["gradcheck", "--methods", "direct", "--out", "g", *TINY],
    ],
    ids=["train", "train-run-dir", "sweep", "sweep-dir", "gradcheck", "gradcheck-out"],
)
def test_read_only_file_system_is_one_line_exit_2(read_only_fs: Path, nodecli_here, args) -> None:
    code, err = nodecli_here(args, read_only_fs)
    COUNTS["faults_injected"] += 1
    assert code == 2, err
    assert one_line(err) and "Read-only file system" in err, err


def test_full_disk_fails_the_run_naming_the_file(
    tmp_path: Path, tiny_fs: Path, nodecli_here
) -> None:
    target = tiny_fs / "run"
    code, err = nodecli_here(
        ["train", *TINY, "train.epochs=3", f"hydra.run.dir={target}"], tmp_path
    )
    COUNTS["faults_injected"] += 1
    assert code == 1, err
    assert "Traceback" not in err
    assert "No space left on device" in err and str(target) in err
    info = read_run_json(target)
    assert info["status"] == "failed" and "No space left" in info["error"]
    assert consistent(target)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_full_disk_before_the_run_is_one_line_exit_2(
    full_fs: Path, nodecli_here, command: str
) -> None:
    dir_key = "hydra.run.dir" if command == "train" else "hydra.sweep.dir"
    code, err = nodecli_here([command, *TINY, f"{dir_key}={full_fs / 'out'}"], full_fs)
    COUNTS["faults_injected"] += 1
    assert code == 2, err
    assert one_line(err) and "No space left on device" in err
    assert str(full_fs / "out") in err
