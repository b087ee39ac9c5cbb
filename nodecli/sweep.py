"""`nodecli sweep`: Hydra multirun over every combination, a summary, and resume.

The command line is expanded into its jobs with Hydra's own override parser and
BasicSweeper, and every job is composed and validated before anything runs, so a typo
in one value exits 2 with nothing written. The sweep directory is always passed to
Hydra explicitly (`hydra.sweep.dir`), so the summary knows where the records are
whatever the launcher (basic, joblib, submitit). Each job lands in
`<sweep dir>/<num>_<overrides>/`, which is deterministic: running the same sweep again
with `sweep.resume=<sweep dir>` maps every job to its old folder, skips the completed
ones and re-runs the rest after moving their old record into `attempts/<n>/`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nodecli.config import Config
from nodecli.errors import EXIT_FAILED, EXIT_OK, ConfigError
from nodecli.runs import (
    ATTEMPTS_DIR,
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUN_FILE,
    atomic_write_text,
    now_iso,
    read_run_json,
)

RESUME_KEY = "sweep.resume"
SWEEP_FILE = "sweep.json"
RECORD_FILES = (RUN_FILE, METRICS_FILE, CHECKPOINT_FILE)

SWEEP_HELP = """\
usage: nodecli sweep [-m] [group=a,b ...] [key=x,y ...] [sweep.resume=DIR] [hydra.* ...]

Runs every combination of the comma-separated values (Hydra multirun) under
outputs/sweeps/<date>/<time>/<num>_<overrides>/, then prints a summary of every job.
Exit code 0 when every job completed, 1 when any failed, 2 for a bad command line.

  nodecli sweep sensealg=adjoint,direct seed=0,1,2 train.epochs=2
  nodecli sweep sweep.resume=outputs/sweeps/2026-01-01/12-00-00   # re-run failed jobs
  nodecli sweep sensealg=adjoint,direct hydra/launcher=joblib hydra.launcher.n_jobs=4
  nodecli sweep sensealg=adjoint,direct hydra/launcher=submitit_slurm \\
      hydra.launcher.partition=gpu hydra.launcher.timeout_min=60
"""


@dataclass
class SweepPlan:
    """What a sweep command line means: where, which jobs, with which Hydra overrides."""

    sweep_dir: Path
    jobs: list[list[str]]
    hydra_overrides: list[str] = field(default_factory=list)
    resume: bool = False
    dir_given: bool = False
    job_args: list[str] = field(default_factory=list)  # as typed: sweep lists unexpanded

    @property
    def job_overrides(self) -> list[str]:
        return [o for job in self.jobs for o in job]


def parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from nodecli.cli import conf_dir
    from nodecli.config import explain_compose_error

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's grammar errors: bad input
        raise ConfigError(explain_compose_error(exc, conf_dir())) from exc


def expand_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep, in Hydra's order (job i is hydra.job.num == i)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if not overrides:
        return [[]]
    parsed = parse_overrides(overrides)
    try:
        (batch,) = BasicSweeper.split_arguments(parsed, None)
    except Exception as exc:
        raise ConfigError(f"cannot expand the sweep: {str(exc).splitlines()[0]}") from exc
    return batch


def _new_sweep_dir() -> Path:
    """outputs/sweeps/<date>/<time>, with -2, -3 … when another sweep took that second."""
    now = datetime.now()
    base = Path("outputs") / "sweeps" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def _has_records(sweep_dir: Path) -> bool:
    return any(sweep_dir.glob(f"*/{RUN_FILE}"))


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plan_sweep(overrides: list[str]) -> SweepPlan:
    """Split the command line into job / Hydra / resume parts and decide the sweep dir."""
    parsed = parse_overrides(overrides)
    resume: str | None = None
    sweep_dir: str | None = None
    job: list[str] = []
    hydra: list[str] = []
    for text, override in zip(overrides, parsed, strict=True):
        key = override.get_key_element()
        if key == RESUME_KEY:
            if override.is_sweep_override():
                raise ConfigError(f"{RESUME_KEY} takes one sweep directory, not a list")
            resume = str(override.value())
        elif key == "hydra.sweep.dir":
            sweep_dir = str(override.value())
        elif key.lstrip("+~").startswith(("hydra.", "hydra/")):
            hydra.append(text)
        else:
            job.append(text)
    if resume is not None:
        resume_dir = Path(resume)
        if not resume_dir.is_dir():
            raise ConfigError(f"{RESUME_KEY}={resume}: no such sweep directory")
        stored = read_sweep_file(resume_dir)
        if not stored and not any(resume_dir.glob("*/.hydra")):
            raise ConfigError(
                f"{RESUME_KEY}={resume} holds no sweep (no {SWEEP_FILE}, no job folders)"
            )
        if sweep_dir is not None and Path(sweep_dir).resolve() != resume_dir.resolve():
            raise ConfigError(f"{RESUME_KEY} and hydra.sweep.dir name different directories")
        stored_job = list(stored.get("job_overrides", []))
        if not job:  # `nodecli sweep sweep.resume=DIR` alone: the stored command line
            job = stored_job
            hydra = hydra or list(stored.get("hydra_overrides", []))
        elif stored and sorted(job) != sorted(stored_job):
            # Other jobs would get other numbers, hence other folders: refuse.
            raise ConfigError(
                f"{RESUME_KEY}={resume} was run with {' '.join(stored_job) or 'no overrides'}; "
                f"resume it with the same overrides or with {RESUME_KEY} alone"
            )
        elif stored:
            job = stored_job  # the same overrides, in the stored order (same job numbers)
        return SweepPlan(resume_dir, expand_jobs(job), hydra, True, True, job)
    if sweep_dir is not None:
        given = Path(sweep_dir)
        if given.is_dir() and _has_records(given):
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} already holds runs; resume it with "
                f"{RESUME_KEY}={sweep_dir} or choose a new directory"
            )
        return SweepPlan(given, expand_jobs(job), hydra, dir_given=True, job_args=job)
    return SweepPlan(Path(), expand_jobs(job), hydra, job_args=job)


def validate_jobs(plan: SweepPlan) -> list[Config]:
    """Compose and validate every job (with the Hydra overrides), then check the machine."""
    from nodecli.cli import check_environment, compose_config

    configs = []
    for job in plan.jobs:
        try:
            configs.append(compose_config([*plan.hydra_overrides, *job]))
        except ConfigError as exc:
            launcher = re.search(r"Could not find 'hydra/launcher/([^']*)'", str(exc))
            if launcher:
                raise ConfigError(
                    f"hydra/launcher={launcher.group(1)} is not an installed launcher; Hydra's "
                    "launchers: basic, joblib, submitit_local, submitit_slurm (the last three: "
                    "pip install 'nodecli[launchers]')"
                ) from exc
            where = f" (in job {' '.join(job)})" if len(plan.jobs) > 1 else ""
            raise ConfigError(f"{exc}{where}") from exc
    checked = set()
    for config in configs:
        key = (config.device.name, config.dataset.name, config.dataset.root, config.data.n)
        if key not in checked:
            checked.add(key)
            check_environment(config)
    return configs


def refuse_live_jobs(plan: SweepPlan) -> None:
    """Resuming while a job of the sweep still runs would train it twice at once."""
    from nodecli.report import read_run_info, run_state

    for num, job in enumerate(plan.jobs):
        job_dir = find_job_dir(plan.sweep_dir, num, job)
        if job_dir is None or not (job_dir / RUN_FILE).is_file():
            continue
        try:
            info = read_run_info(job_dir / RUN_FILE)
        except ValueError:
            continue
        state, age = run_state(info)
        if state == "running":
            raise ConfigError(
                f"job {num} ({job_dir}) is still running (pid {info.get('pid')} on "
                f"{info.get('host')}, last heartbeat {age:.0f} s ago); wait for it or stop it "
                "before resuming"
            )


# --- what runs inside each job (possibly in another process or on a cluster node) ------


def record_status(job_dir: Path) -> str | None:
    """The status in JOB_DIR's run.json; None when there is no record, 'unreadable' if bad."""
    path = job_dir / RUN_FILE
    if not path.exists():
        return None if not (job_dir / METRICS_FILE).exists() else "unreadable"
    try:
        return str(read_run_json(job_dir).get("status", "unreadable"))
    except (OSError, ValueError):  # read_run_json: ValueError also for a non-object
        return "unreadable"


def archive_attempt(job_dir: Path) -> Path | None:
    """Move the record files of a previous attempt into JOB_DIR/attempts/<n>/."""
    present = [job_dir / name for name in RECORD_FILES if (job_dir / name).exists()]
    if not present:
        return None
    attempts = job_dir / ATTEMPTS_DIR
    numbers = [int(p.name) for p in attempts.glob("*") if p.name.isdigit()]
    target = attempts / str(max(numbers, default=0) + 1)
    target.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), str(target / path.name))
    return target


def sweep_task(cfg: DictConfig) -> int:
    """What Hydra runs for each sweep job; it never raises (one job must not stop others)."""
    from hydra.core.hydra_config import HydraConfig

    from nodecli.train import run_experiment

    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    num = hydra_cfg.job.num
    total = read_sweep_file(Path(hydra_cfg.sweep.dir)).get("n_jobs", "?")
    label = " ".join(overrides) or "(defaults)"
    try:
        status = record_status(job_dir)
        if status == "completed":
            print(f"[sweep] job {num + 1}/{total} skipped (already completed): {label}", flush=True)
            return EXIT_OK
        moved = archive_attempt(job_dir)
        note = f" (previous {status} record moved to {moved})" if moved else ""
        print(f"[sweep] job {num + 1}/{total} started: {label} -> {job_dir}{note}", flush=True)
        config = OmegaConf.to_object(cfg)
        assert isinstance(config, Config)
        code = run_experiment(config, job_dir, overrides)
    except Exception as exc:  # noqa: BLE001 - the summary reports the job as failed
        print(f"[sweep] job {num + 1}/{total} crashed: {type(exc).__name__}: {exc}", flush=True)
        return EXIT_FAILED
    if code >= 128:  # Ctrl-C / SIGTERM: stop the whole sweep; resume picks it up later
        raise SystemExit(code)
    return code


# --- the command --------------------------------------------------------------------------


@dataclass
class JobResult:
    num: int
    overrides: list[str]
    job_dir: Path | None
    status: str
    epochs: int | None = None
    train_acc: float | None = None
    test_acc: float | None = None
    train_time_s: float | None = None
    error: str | None = None


def find_job_dir(sweep_dir: Path, num: int, overrides: list[str]) -> Path | None:
    """The folder Hydra used for job NUM (matched by number, then by its overrides)."""
    candidates = sorted(p for p in sweep_dir.glob(f"{num}_*") if p.is_dir())
    if not overrides:
        candidates += [p for p in (sweep_dir / str(num),) if p.is_dir()]
    for path in candidates:
        try:
            stored = OmegaConf.load(path / ".hydra" / "overrides.yaml")
            if sorted(map(str, stored)) == sorted(overrides):
                return path
        except Exception:  # noqa: BLE001 - unreadable: fall back to the name
            continue
    if len(candidates) == 1:
        return candidates[0]
    # A custom hydra.sweep.subdir: look for the folder whose overrides are this job's.
    matches = []
    for path in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        try:
            if sorted(map(str, OmegaConf.load(path))) == sorted(overrides):
                matches.append(path.parent.parent)
        except Exception:  # noqa: BLE001
            continue
    return matches[0] if len(matches) == 1 else None


def collect_results(plan: SweepPlan) -> list[JobResult]:
    from nodecli.report import read_metrics, read_run_info

    results = []
    for num, job in enumerate(plan.jobs):
        job_dir = find_job_dir(plan.sweep_dir, num, job)
        result = JobResult(num, job, job_dir, "not run")
        if job_dir is not None and (job_dir / RUN_FILE).exists():
            try:
                info = read_run_info(job_dir / RUN_FILE)
                result.status = str(info.get("status", "unknown"))
                result.error = info.get("error")
            except ValueError as exc:
                result.status, result.error = "unreadable", str(exc)
            try:
                metrics = read_metrics(job_dir / METRICS_FILE)
                result.epochs = len(metrics)
                if len(metrics):
                    result.train_acc = float(metrics["train_acc"].iloc[-1])
                    result.test_acc = float(metrics["test_acc"].iloc[-1])
                    result.train_time_s = float(metrics["train_time_s"].sum())
            except ValueError:
                pass
        results.append(result)
    return results


def summary_table(plan: SweepPlan, results: list[JobResult]):
    from rich.table import Table

    varying = _varying_keys(plan.jobs)
    constant = sorted({o for job in plan.jobs for o in job if o.split("=")[0] not in varying})
    title = f"nodecli sweep: {plan.sweep_dir}"
    table = Table(title=title, caption="common: " + " ".join(constant) if constant else None)
    for name, justify in (
        ("job", "right"),
        ("overrides", "left"),
        ("status", "left"),
        ("epochs", "right"),
        ("train acc (%)", "right"),
        ("test acc (%)", "right"),
        ("train time (s)", "right"),
        ("error", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name != "error")
    colours = {"completed": "green", "failed": "red", "interrupted": "yellow"}

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None or value != value else format(value, fmt)

    for r in results:
        shown = [o for o in r.overrides if o.split("=")[0] in varying] or r.overrides
        colour = colours.get(r.status, "magenta")
        where = r.error or "" if r.status != "completed" else ""
        table.add_row(
            str(r.num),
            " ".join(shown) or "(defaults)",
            f"[{colour}]{r.status}[/{colour}]",
            "" if r.epochs is None else str(r.epochs),
            num(r.train_acc, ".2f"),
            num(r.test_acc, ".2f"),
            num(r.train_time_s, ".3f"),
            where,
        )
    return table


def _varying_keys(jobs: list[list[str]]) -> set[str]:
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def sweep_command(args: list[str]) -> int:
    from nodecli.cli import hydra_arg_parser, quote_override_value, run_hydra
    from nodecli.console import make_console

    args = [a for a in args if a not in ("-m", "--multirun")]  # sweep always means multirun
    if any(a in ("-h", "--help") for a in args):
        print(SWEEP_HELP, end="")
        return EXIT_OK
    parsed = hydra_arg_parser().parse_args(args)
    if parsed.hydra_help or parsed.cfg or parsed.info:
        raise ConfigError("sweep takes overrides only; use `nodecli train --cfg job …` to inspect")
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown sweep option {flags[0]}; `nodecli sweep --help` shows usage")
    plan = plan_sweep(parsed.overrides)
    validate_jobs(plan)
    if plan.resume:
        refuse_live_jobs(plan)
    if not plan.dir_given:
        plan.sweep_dir = _new_sweep_dir()
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    stored = read_sweep_file(plan.sweep_dir)
    job_args = plan.job_args
    atomic_write_text(
        plan.sweep_dir / SWEEP_FILE,
        json.dumps(
            {
                "created_at": stored.get("created_at", now_iso()),
                "resumed_at": [
                    *stored.get("resumed_at", []),
                    *([now_iso()] if plan.resume else []),
                ],
                "job_overrides": job_args,
                "hydra_overrides": plan.hydra_overrides,
                "n_jobs": len(plan.jobs),
                "jobs": plan.jobs,
            },
            indent=2,
        )
        + "\n",
    )
    console = make_console()
    verb = "resuming" if plan.resume else "running"
    print(f"[sweep] {verb} {len(plan.jobs)} job(s) in {plan.sweep_dir}", flush=True)
    launcher = [o for o in plan.hydra_overrides if o.startswith("hydra/launcher=")]
    if launcher and launcher[-1] != "hydra/launcher=basic":
        # Jobs print their own start line in the launcher's processes / logs.
        for num, job in enumerate(plan.jobs):
            label = " ".join(job) or "(defaults)"
            print(f"[sweep] job {num + 1}/{len(plan.jobs)} queued: {label}", flush=True)
    hydra_args = [
        "--multirun",
        *plan.hydra_overrides,
        *job_args,
        f"hydra.sweep.dir={quote_override_value(str(plan.sweep_dir))}",
    ]
    interrupted = False
    try:
        run_hydra(sweep_task, hydra_args)
    except KeyboardInterrupt:
        interrupted = True
    except SystemExit as exc:  # Hydra reports its own errors and exits; keep the summary
        if exc.code not in (0, None):
            print(f"[sweep] the launcher stopped with exit code {exc.code}", flush=True)
    results = collect_results(plan)
    console.print(summary_table(plan, results))
    failed = [r for r in results if r.status != "completed"]
    if interrupted:
        raise KeyboardInterrupt
    if failed:
        print(
            f"[sweep] {len(failed)} of {len(results)} job(s) did not complete; re-run them with "
            f"`nodecli sweep {RESUME_KEY}={plan.sweep_dir}`"
        )
        return EXIT_FAILED
    print(
        f"[sweep] all {len(results)} job(s) completed; compare them with "
        f"`nodecli report {plan.sweep_dir}`"
    )
    return EXIT_OK
