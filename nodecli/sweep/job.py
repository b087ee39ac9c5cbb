"""What runs inside each sweep job (possibly in a launcher's process or on a cluster
node): claim the job folder, skip a completed job, move an earlier attempt aside, train.

The claim comes first, so two sweeps (or a sweep and a `train resume=`) can never both
run one job or move each other's live record into attempts/.

A job that the scheduler restarts (SLURM requeue, preemption, or submitit's requeue at
the time limit) continues its own record from the last finished epoch instead of
starting over, so no finished epoch is trained twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TextIO

from omegaconf import DictConfig, OmegaConf

from nodecli.config.launch import HydraJob, current_job
from nodecli.config.overrides import shell_override
from nodecli.config.schema import Config, validate
from nodecli.config.tree import register_resolvers
from nodecli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, os_error_line
from nodecli.record.layout import ATTEMPTS_DIR, CHECKPOINT_FILE, METRICS_FILE, RUN_FILE
from nodecli.record.ownership import ClaimError, claim_folder, ensure_owned, release_folder
from nodecli.record.read import read_recorded_metrics, read_run_json
from nodecli.signals import output_never_stops_work
from nodecli.sweep.folders import find_job_dir
from nodecli.sweep.plan import RESUME_KEY, read_sweep_file
from nodecli.sweep.search import trial_result
from nodecli.train.resume import validate_record

RECORD_FILES = (RUN_FILE, METRICS_FILE, CHECKPOINT_FILE)
# A launcher's worker process (joblib, submitit) imports this module to run sweep_task
# and resolves hydra.sweep.subdir itself, which needs nodecli's resolvers.
register_resolvers()


def record_status(job_dir: Path) -> str | None:
    """The status in JOB_DIR's run.json; None when there is no record, 'unreadable' if bad,
    'damaged' for a `completed` record whose metrics.csv lacks finished epochs (it was
    skipped as completed, while `nodecli report` skipped it as damaged)."""
    if not (job_dir / RUN_FILE).exists():
        return None if not (job_dir / METRICS_FILE).exists() else "unreadable"
    try:
        info = read_run_json(job_dir)
    except ValueError:
        return "unreadable"
    status = str(info["status"])
    if status == "completed":
        try:
            rows = len(read_recorded_metrics(job_dir, info))
        except ValueError:
            return "damaged"
        if type(info.get("epochs_completed")) is not int or rows == 0:
            return "damaged"
    return status


def completed_jobs(sweep_dir: Path, jobs: list[list[str]], job_dirs: list[str]) -> set[int]:
    """The numbers of the jobs whose record says completed: a resume skips them."""
    done = set()
    for num, job in enumerate(jobs):
        job_dir = find_job_dir(sweep_dir, num, job, job_dirs)
        if job_dir is not None and record_status(job_dir) == "completed":
            done.add(num)
    return done


def archive_attempt(job_dir: Path) -> Path | None:
    """Move the record files of a previous attempt into JOB_DIR/attempts/<n>/."""
    present = [job_dir / name for name in RECORD_FILES if (job_dir / name).exists()]
    if not present:
        return None
    attempts = job_dir / ATTEMPTS_DIR
    numbers = [int(p.name) for p in attempts.glob("*") if p.name.isdigit()]
    target = attempts / str(max(numbers, default=0) + 1)
    ensure_owned(job_dir)  # moving a record is writing it
    target.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), str(target / path.name))
    return target


def scheduler_restarts() -> int:
    """How often the scheduler has restarted this job (SLURM sets SLURM_RESTART_COUNT on
    a requeued job; submitit requeues through SLURM too); 0 outside a scheduler."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


#: Records a resume continues from their last finished epoch: stopped (a signal) or cut
#: off (killed, the machine lost) while running. A failed job starts over.
CONTINUED = ("interrupted", "running")


def restart_point(job_dir: Path, config: Config, status: str | None) -> tuple[int | None, str]:
    """(epochs kept, why) for a job restarted by the scheduler, or resumed after it was
    stopped (STATUS interrupted or running): its record's finished epochs when the record
    is whole, else (None, what is wrong) and the job starts over."""
    restarted = scheduler_restarts() >= 1
    if not (restarted or status in CONTINUED) or not (job_dir / RUN_FILE).exists():
        return None, ""
    try:
        kept = validate_record(job_dir, config, check_live=not restarted)
    except ConfigError as exc:
        return None, str(exc)
    return kept, ""


def sweep_task(cfg: DictConfig) -> int | float | None:
    """What Hydra runs for each sweep job: its exit code, or in an Optuna search the
    trial's objective read back from its record (None, a failed trial, if it did not
    complete). It never raises (one job must not stop others) except to stop the whole
    sweep on Ctrl-C / SIGTERM."""
    job = current_job(sweep=True)
    job_dir = job.output_dir
    plan = read_sweep_file(job.sweep_dir)
    objective = plan.get("objective")
    # Quiet unless sweep.verbose=true: a job's epoch lines and table (14 lines for the
    # reference) made a 10-job sweep print 272 lines; errors still go to stderr.
    quiet = open(os.devnull, "w") if plan.get("verbose") is not True else None  # noqa: SIM115
    with output_never_stops_work():  # also in a launcher's worker process
        code = run_job(cfg, job, plan.get("n_jobs", "?"), isinstance(objective, str), quiet)
    if quiet is not None:
        quiet.close()
    return trial_result(job_dir, objective) if isinstance(objective, str) else code


def run_job(
    cfg: DictConfig,
    job: HydraJob,
    total: object,
    trial: bool = False,
    quiet: TextIO | None = None,
) -> int:
    """Claim JOB's folder, then skip, continue or (re)train the job; return its exit code.
    A TRIAL of an Optuna search is not continued by `sweep.resume` (which refuses
    searches), so its stop advises no command. QUIET, when given, takes the training's
    own standard output (epoch lines, table); the job's [sweep] lines stay."""
    # Imported here: the training stack is only needed in the process that trains.
    from nodecli.train.loop import run_experiment

    job_dir, num, overrides, sweep_dir = job.output_dir, job.num, job.overrides, job.sweep_dir
    label = f"job {num} (of {total})"
    what = " ".join(overrides) or "(defaults)"
    try:
        claim_folder(job_dir, f"sweep job {num}")
    except ClaimError as exc:
        print(f"[sweep] {label} not run: {exc}", flush=True)
        return EXIT_USAGE
    except OSError as exc:
        print(f"[sweep] {label} not run: {os_error_line(exc)}", flush=True)
        return EXIT_FAILED
    try:
        status = record_status(job_dir)
        if status == "completed":
            print(f"[sweep] {label} skipped (already completed): {what}", flush=True)
            return EXIT_OK
        config = OmegaConf.to_object(cfg)
        assert isinstance(config, Config)
        # Checked before the sweep too, but only here do values read from the job's own
        # environment (hydra.job.env_set + ${oc.env:…}) resolve: train.lr=-1 got through.
        validate(config)
        kept, why = restart_point(job_dir, config, status)
        if kept is not None:
            config.resume = str(job_dir)
            by = "restarted by the scheduler" if scheduler_restarts() >= 1 else f"was {status}"
            note = f" ({by}: continuing after epoch {kept})"
        else:
            moved = archive_attempt(job_dir)
            note = f" (previous {status} record moved to {moved})" if moved else ""
            note += f" (restarted, but the record cannot be continued: {why})" if why else ""
        print(f"[sweep] {label} started: {what} -> {job_dir}{note}", flush=True)
        # A job is continued by resuming its sweep, never by `nodecli train resume=`.
        again = "" if trial else f"nodecli sweep {shell_override(RESUME_KEY, str(sweep_dir))}"
        with contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
            code = run_experiment(config, job_dir, overrides, resume_hint=again)
    except ConfigError as exc:
        print(f"[sweep] {label} not run: {exc}", flush=True)
        return EXIT_USAGE
    except OSError as exc:
        print(f"[sweep] {label} failed: {os_error_line(exc)}", flush=True)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the summary reports the job as failed
        print(f"[sweep] {label} crashed: {type(exc).__name__}: {exc}", flush=True)
        return EXIT_FAILED
    finally:
        release_folder(job_dir)
    if code >= 128:  # Ctrl-C / SIGTERM: stop the whole sweep; resume picks it up later
        raise SystemExit(code)
    return code
