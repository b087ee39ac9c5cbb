"""`nodecli sweep` end to end: multirun, summary, failures, resume, launchers; then
`nodecli report` on the records it wrote. A subprocess only for the launchers (their own
processes) and a signal; the rest, the shared sweeps included, runs `nodecli` in this
process."""

from __future__ import annotations

import json
import os
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_here

TINY1 = ["train.epochs=1", "data.n=200", "train.batch_size=64"]
TINY2 = ["train.epochs=2", "data.n=200", "train.batch_size=64"]
SAME = ["epoch", "train_loss", "train_acc", "test_acc", "nfe_forward", "nfe_backward"]


def sweep_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/sweeps/*/*/sweep.json"))


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=_num)


def _num(path: Path) -> int:
    return int(path.name.split("_")[0])


def status(job_dir: Path) -> str:
    return json.loads((job_dir / "run.json").read_text())["status"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, object]:
    """One 2 sensealgs × 2 seeds sweep, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("sweep")
    result = run_here(["sweep", "-m", "sensealg=direct,adjoint", "seed=0,1", *TINY2], root)
    return root, result


@pytest.mark.slow
def test_sweep_runs_every_combination_in_its_own_folder(swept) -> None:
    root, result = swept
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = sweep_dirs(root)
    jobs = job_dirs(sweep_dir)
    assert [j.name for j in jobs] == [
        "0_data.n=200,seed=0,sensealg=direct,train.batch_size=64,train.epochs=2",
        "1_data.n=200,seed=1,sensealg=direct,train.batch_size=64,train.epochs=2",
        "2_data.n=200,seed=0,sensealg=adjoint,train.batch_size=64,train.epochs=2",
        "3_data.n=200,seed=1,sensealg=adjoint,train.batch_size=64,train.epochs=2",
    ]
    assert all(status(j) == "completed" for j in jobs)
    assert all(len(pd.read_csv(j / "metrics.csv")) == 2 for j in jobs)
    for n in range(4):  # numbered from 0, like the folders and the summary
        assert f"[sweep] job {n} (of 4) started" in result.stdout
    # the summary table: one row per job with its overrides and status
    assert result.stdout.count("completed") >= 4
    assert "sensealg=adjoint seed=1" in result.stdout
    assert "all 4 job(s) completed" in result.stdout


@pytest.mark.slow
def test_report_on_the_sweep(swept, cli_here, tmp_path: Path) -> None:
    root, _ = swept
    result = cli_here(
        "report", str(root), "--format", "markdown", "--plot", str(tmp_path / "r.png")
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2
    assert rows[0].startswith("| sensealg | runs | epochs |")  # labels: values only (issue 10)
    assert rows[2].startswith("| direct | 2 | 2 | ")
    assert rows[3].startswith("| adjoint | 2 | 2 | ")
    assert all(row.count("±") >= 8 for row in rows[2:])
    assert "1.00×" in rows[2]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_value_in_one_job_exits_2_before_anything_runs(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    for args, message in [
        (["sensealg=direct,nope"], "sensealg=nope is not an option"),
        (["train.epochs=1,0"], "train.epochs=0 is out of range"),
        (["hydra/launcher=nope"], "hydra/launcher=nope is not an installed launcher"),
        (["hydra/sweeper=nope"], "sweepers: nodecli (the default grid), basic"),
        (["seed=0,1", "hydra.sweep.subdir=same"], "the folders 'same' and 'same'"),
        (["seed=0,1", "hydra.sweep.subdir=."], "which is not a folder inside the sweep"),
        (["hydra.sweep.subdir=../out${hydra.job.num}"], "'../out0', which is not a folder"),
        (["hydra.sweep.subdir=${nope}"], "hydra.sweep.subdir cannot be resolved for job 0"),
        (["hydra.mode=RUN"], "hydra.mode=RUN is not supported"),
        (["hydra.job.env_set.FOO=a,b"], "Hydra's own settings take one value for the whole"),
        (["+hydra.sweeper.params={train.lr:'0.001,-1'}"], "not in hydra.sweeper.params"),
        (["hydra.sweep.subdir=${nodecli_uid:}"], "a different folder on every run"),
        (["hydra.sweep.subdir=${hydra.job.id}"], "a different folder on every run"),
        (["hydra.sweep.subdir=sweep.json"], "the name of the sweep's own sweep.json"),
        (["hydra.sweep.subdir=${hydra.job.num}/attempts/1"], "inside a folder named 'attempts'"),
        (
            ["hydra/sweeper=optuna", "hydra.sweeper.n_jobs=0", "train.lr=interval(0.001,0.01)"],
            "hydra.sweeper.n_jobs=0 is not valid; valid: an integer ≥ 1",
        ),  # fmt: skip
        (
            ["hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=-5", "train.lr=0.001,0.01"],
            "hydra.sweeper.sampler.seed=-5 is not valid; valid: an integer in [0, 4294967295]",
        ),  # fmt: skip
        (["dataset.root=r,r/s", "hydra.sweep.subdir=${dataset.root}"], "one inside or the"),
        (["hydra.launcher.bogus=1"], "unknown config key 'hydra.launcher.bogus' for the chosen"),
        (["sweep.resume=does/not/exist"], "no such sweep directory"),
        (["--cfg", "job"], "sweep takes overrides only"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["sweep", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "outputs").exists()


def test_hydra_composes_each_job_once_after_nodecli_validated_it(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """`nodecli sweep` composes and validates every job before Hydra starts; Hydra's
    BasicSweeper composed each one again (validate_batch_is_legal) before its launcher
    composed it to run: ~65 ms a job. hydra/sweeper=nodecli leaves only the launcher's."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from nodecli import cli

    composed: list[list[str]] = []
    original = ConfigLoaderImpl.load_sweep_config

    def counting(self, master_config, sweep_overrides):
        composed.append(list(sweep_overrides))
        return original(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counting)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "seed=0,1,2", *TINY1])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, out + err
    assert sorted(job[0] for job in composed) == ["seed=0", "seed=1", "seed=2"]
    (sweep_dir,) = sweep_dirs(tmp_path)
    assert all(status(j) == "completed" for j in job_dirs(sweep_dir))


def test_a_custom_subdir_sweep_resumes_in_its_own_folders(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Resuming with another launcher kept only the launcher: the stored subdir was
    dropped, so completed jobs trained again in new folders. A job is continued by its
    sweep, never by `train resume=` (which made the sweep's plan and folders disagree)."""
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    subdir = "hydra.sweep.subdir=job${hydra.job.num}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "seed=0,1", *TINY1, subdir, "hydra.sweep.dir=sw"])
    assert exit_info.value.code == 0, capsys.readouterr()
    for extra in (["hydra/launcher=basic"], [subdir, "hydra/launcher=basic"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["sweep", "sweep.resume=sw", *extra])
        out, err = capsys.readouterr()
        assert exit_info.value.code == 0, out + err
        assert out.count("skipped (already completed)") == 2, out
    assert sorted(p.name for p in (tmp_path / "sw").iterdir() if p.is_dir()) == ["job0", "job1"]
    stored = json.loads((tmp_path / "sw" / "sweep.json").read_text())["hydra_overrides"]
    assert stored == [subdir, "hydra/launcher=basic"]
    for args, message in [
        (["sweep", "sweep.resume=sw", "hydra.sweep.subdir=j${hydra.job.num}"], "another folder"),
        (["train", "resume=sw/job0"], "is a job of the sweep"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "sw" / "job0" / ".hydra" / "overrides.yaml").read_text().count("resume") == 0


@pytest.mark.parametrize(
    ("jobs", "subdir", "folders"),
    [
        (["seed=0,0"], "a/${hydra.job.num}", ["a/0", "a/1"]),  # nested, duplicate overrides
        (["seed=1,0"], "${seed}", ["0", "1"]),  # numbers that are not the job numbers
    ],
)
def test_custom_subdir_sweeps_are_summarised_and_resumed_from_their_folders(
    tmp_path: Path, monkeypatch, capsys, jobs: list[str], subdir: str, folders: list[str]
) -> None:
    """Such sweeps completed but were summarised as 'not run' (exit 1), or their resume
    read folder `0` as job 0 and refused: job folders are kept in sweep.json now."""
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    for extra in ([*jobs, *TINY1, f"hydra.sweep.subdir={subdir}", "hydra.sweep.dir=sw"],
                  ["sweep.resume=sw"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["sweep", *extra])
        out, err = capsys.readouterr()
        assert exit_info.value.code == 0, out + err
        assert "all 2 job(s) completed" in out, out
    assert out.count("skipped (already completed)") == 2
    stored = json.loads((tmp_path / "sw" / "sweep.json").read_text())["job_dirs"]
    assert sorted(stored) == folders


def test_values_from_the_jobs_own_environment_are_validated_in_the_job(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """${oc.env:…} with hydra.job.env_set resolves only inside the job: lr=-1 trained."""
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    env = ["train.lr=${oc.env:NODECLI_TEST_LR,0.001}", "+hydra.job.env_set.NODECLI_TEST_LR=-1"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "seed=0,1", *TINY1, *env])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 1
    assert out.count("not run: train.lr=-1.0 is out of range") == 2, out
    assert not list(tmp_path.glob("outputs/sweeps/*/*/*/run.json"))


def test_long_overrides_and_path_values_get_one_folder_name_each(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Over 255 bytes ("File name too long") the name is cut and ends in a hash; a `/` in
    a value would nest folders. Both sweeps run, and resume finds the same folders."""
    from nodecli import cli
    from nodecli.config.tree import MAX_NAME_BYTES

    monkeypatch.chdir(tmp_path)
    long = "0.00100000000000000000001"
    keys = ["solver.rtol", "solver.atol", "sensealg.adjoint_rtol", "sensealg.adjoint_atol"]
    args = ["seed=0,1", "sensealg=adjoint", "dataset.root=data/my-digits", *TINY1]
    args += [f"{key}={long}" for key in keys] + [f"model.t1=1.{'0' * 40}1", "device.threads=1"]
    args += ["layer_style=module", "model.latent=20", "model.hidden=10", "data.split=0.9"]
    for resume in (False, True):
        extra = [f"sweep.resume={sweep_dirs(tmp_path)[0]}"] if resume else []
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["sweep", *args, *extra])
        out, err = capsys.readouterr()
        assert exit_info.value.code == 0, out + err
    assert out.count("skipped (already completed)") == 2
    (sweep_dir,) = sweep_dirs(tmp_path)
    jobs = job_dirs(sweep_dir)
    assert [_num(j) for j in jobs] == [0, 1] and all(status(j) == "completed" for j in jobs)
    assert all(len(j.name.encode()) <= MAX_NAME_BYTES for j in jobs)
    assert "dataset.root=data_my-digits" in jobs[0].name
    assert sorted(p.name for p in sweep_dir.iterdir()) == sorted(
        [".nodecli.lock", "multirun.yaml", "sweep.json", *(j.name for j in jobs)]
    )


def test_failed_job_does_not_stop_others_and_resume_reruns_only_it(
    cli_here, tmp_path: Path
) -> None:
    # solver.max_steps=1 validates but the solver gives up at run time: a failed run.
    result = cli_here("sweep", "solver.max_steps=1,10000", *TINY1)
    assert result.returncode == 1
    (sweep_dir,) = sweep_dirs(tmp_path)
    failed, ok = job_dirs(sweep_dir)
    assert status(failed) == "failed" and status(ok) == "completed"
    assert "exceeded solver.max_steps=1" in result.stdout  # the summary names the error
    assert "1 of 2 job(s) did not complete" in result.stdout
    completed_record = (ok / "run.json").read_text()

    result = cli_here("sweep", f"sweep.resume={sweep_dir}")
    assert result.returncode == 1
    assert "job 1 (of 2) skipped (already completed)" in result.stdout
    assert "job 0 (of 2) started" in result.stdout and "job 1 (of 2) started" not in result.stdout
    assert (ok / "run.json").read_text() == completed_record  # untouched
    assert not (ok / "attempts").exists()
    assert json.loads((failed / "attempts" / "1" / "run.json").read_text())["status"] == "failed"
    assert status(failed) == "failed"
    assert len(sweep_dirs(tmp_path)) == 1  # resumed in place


@pytest.fixture(scope="module")
def basic_tiny(tmp_path_factory) -> Path:
    """A 2-job sweep (seed=0,1, one epoch) with the basic launcher, to compare with."""
    root = tmp_path_factory.mktemp("basic")
    result = run_here(["sweep", "seed=0,1", *TINY1, f"hydra.sweep.dir={root / 'sweep'}"], root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "sweep"


@pytest.mark.slow
def test_resume_completes_a_killed_job(cli_here, tmp_path: Path, basic_tiny: Path) -> None:
    sweep_dir = tmp_path / "outputs" / "sweeps" / "copy"
    shutil.copytree(basic_tiny, sweep_dir)
    killed, done = job_dirs(sweep_dir)
    info = json.loads((killed / "run.json").read_text())
    # A job that is still alive (fresh heartbeat, live pid here) is not run twice.
    live = {**info, "status": "running", "pid": os.getpid(), "host": socket.gethostname()}
    live["heartbeat_at"] = datetime.now(timezone.utc).isoformat()
    (killed / "run.json").write_text(json.dumps(live))
    result = cli_here("sweep", f"sweep.resume={sweep_dir}")
    assert result.returncode == 2 and "is still running" in result.stderr, result.stderr
    # What SIGKILL leaves behind: status still "running", an old heartbeat.
    info.update(status="running", heartbeat_at="2020-01-01T00:00:00.000+00:00", ended_at=None)
    (killed / "run.json").write_text(json.dumps(info))
    report = cli_here("report", "--format", "json")
    assert [r["status"] for r in json.loads(report.stdout)["incomplete"]] == ["stale"]

    result = cli_here("sweep", f"sweep.resume={sweep_dir}")
    assert result.returncode == 0, result.stdout
    assert "job 1 (of 2) skipped" in result.stdout and "job 0 (of 2) started" in result.stdout
    # continued from its last finished epoch, as a requeued job is: nothing trained twice
    assert "was running: continuing after epoch 1" in result.stdout, result.stdout
    assert status(killed) == "completed" and status(done) == "completed"
    assert not (killed / "attempts").exists()
    report = cli_here("report", "--format", "json")
    assert json.loads(report.stdout)["incomplete"] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
    ],
    ids=["joblib", "submitit_local"],
)
def test_launchers_write_the_same_records_as_basic(
    cli, tmp_path: Path, basic_tiny: Path, launcher
) -> None:
    other = tmp_path / "other"
    result = cli("sweep", "seed=0,1", *TINY1, *launcher, f"hydra.sweep.dir={other}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "job 1 (of 2) queued" in result.stdout
    pairs = list(zip(job_dirs(basic_tiny), job_dirs(other), strict=True))
    assert len(pairs) == 2
    for a, b in pairs:
        assert a.name == b.name and status(b) == "completed"
        pd.testing.assert_frame_equal(
            pd.read_csv(a / "metrics.csv")[SAME], pd.read_csv(b / "metrics.csv")[SAME]
        )
        assert (a / ".hydra" / "config.yaml").read_text() == (
            b / ".hydra" / "config.yaml"
        ).read_text()


@pytest.mark.slow
def test_resume_with_the_same_overrides_in_any_order(cli_here, tmp_path: Path, basic_tiny) -> None:
    sweep_dir = tmp_path / "copy"
    shutil.copytree(basic_tiny, sweep_dir)
    before = [(j / "run.json").read_text() for j in job_dirs(sweep_dir)]
    reordered = [*reversed(TINY1), "seed=0,1"]
    result = cli_here("sweep", *reordered, f"sweep.resume={sweep_dir}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("skipped (already completed)") == 2
    assert [(j / "run.json").read_text() for j in job_dirs(sweep_dir)] == before
    assert len(job_dirs(sweep_dir)) == 2
    result = cli_here("sweep", "seed=0,1,2", *TINY1, f"sweep.resume={sweep_dir}")
    assert result.returncode == 2 and "resume it with the same overrides" in result.stderr


@pytest.mark.slow
def test_a_stopped_sweep_exits_like_a_stopped_train(tmp_path: Path) -> None:
    """SIGTERM: exit 143 (as `nodecli train`), the job's record says interrupted."""
    import signal
    import subprocess
    import time

    from conftest import nodecli_command

    slow = ["data.n=600", "solver.rtol=1e-7", "solver.atol=1e-7", "train.epochs=20"]
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen(
        [*nodecli_command(), "sweep", "seed=0,1", *slow, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(sweep_dir.glob("0_*/metrics.csv")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err
    (job,) = sweep_dir.glob("0_*")
    assert status(job) == "interrupted"


@pytest.mark.parametrize("width", [80, 100, 200])
def test_sweep_summary_keeps_statuses_and_numbers_whole_beside_a_long_override(
    width: int,
) -> None:
    """A 150-character override cut the job numbers to nothing and `completed` to `co`;
    `[bold]x` in an override was read as rich markup."""
    from rich.console import Console

    from nodecli.sweep.plan import SweepPlan
    from nodecli.sweep.table import JobResult, job_errors, summary_table

    long = "dataset.root='" + "L" * 150 + "'"
    jobs = [["dataset.root='a'", "seed=0"], [long, "seed=1"], ["dataset.root='[bold]x'", "seed=2"]]
    results = [
        JobResult(0, jobs[0], None, "completed", 9, 88.123, 90.0, 0.5),
        JobResult(1, jobs[1], None, "interrupted", 3, 80.0, 70.0, 0.2),
        JobResult(2, jobs[2], None, "failed", 1, error="SolverError: step size underflow"),
    ]
    console = Console(width=width, record=True)
    console.print(summary_table(SweepPlan(Path("/tmp/s"), jobs), results))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    for cell in ("completed", "interrupted", "failed", "88.12", "90.00", "0.500", "old]x'"):
        assert cell in text, cell  # `old]x'`: rich markup would have eaten "[bold]"
    assert text.count("L") == 150  # wrapped, never cut
    assert job_errors(results) == ["job 2 (failed): SolverError: step size underflow"]


def test_a_completed_job_with_truncated_metrics_is_not_skipped(tmp_path: Path) -> None:
    """sweep.resume skipped it as completed (49 of 150 epochs) while report skipped it as
    damaged; now it is moved to attempts/ and trained again, like an unreadable one."""
    from nodecli.sweep.job import record_status

    header = "epoch,train_time_s,train_loss,train_acc,test_acc,nfe_forward,nfe_backward\n"
    row = "{},0.1,0.5,50.0,50.0,14,13\n"
    (tmp_path / "run.json").write_text(json.dumps({"status": "completed", "epochs_completed": 3}))
    (tmp_path / "metrics.csv").write_text(header + row.format(1))
    assert record_status(tmp_path) == "damaged"
    (tmp_path / "metrics.csv").write_text(header + "".join(row.format(e) for e in (1, 2, 3)))
    assert record_status(tmp_path) == "completed"
    (tmp_path / "metrics.csv").write_text(header + row.format(1) + row.format(1))
    assert record_status(tmp_path) == "damaged"
