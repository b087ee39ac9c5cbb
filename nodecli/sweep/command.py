"""`nodecli sweep`: Hydra multirun over every combination, a summary, and resume.

The command line is expanded into its jobs and every job is composed and validated
before anything runs (nodecli.sweep.plan), so a typo in one value exits 2 with nothing
written. The sweep directory is always passed to Hydra explicitly (`hydra.sweep.dir`),
so the summary knows where the records are whatever the launcher (basic, joblib,
submitit). Each job lands in `<sweep dir>/<num>_<overrides>/`, which is deterministic:
running the same sweep again with `sweep.resume=<sweep dir>` maps every job to its old
folder, skips the completed ones and re-runs the rest after moving their old record
into `attempts/<n>/` (nodecli.sweep.job). The sweep claims its folder for its whole
run, so two resumes of one sweep cannot run at once. Jobs are numbered from 0
everywhere: progress lines, summary and folders.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys

from nodecli.atomic import atomic_write_text
from nodecli.config.launch import hydra_arg_parser, register_plugin, run_hydra
from nodecli.config.overrides import quote_override_value, shell_override
from nodecli.errors import EXIT_FAILED, EXIT_OK, ConfigError, PluginError
from nodecli.record.layout import RUN_FILE, folder_entries
from nodecli.record.ownership import claim_folder, ensure_owned
from nodecli.record.read import read_run_json, run_state
from nodecli.record.run import now_iso
from nodecli.signals import ForwardStop, output_never_stops_work
from nodecli.sweep.folders import find_job_dir, numbered_folders
from nodecli.sweep.job import completed_jobs, sweep_task
from nodecli.sweep.plan import (
    RESUME_KEY,
    SWEEP_FILE,
    SweepPlan,
    new_sweep_dir,
    plan_sweep,
    read_sweep_file,
    validate_jobs,
)
from nodecli.sweep.search import (
    OBJECTIVES,
    describe_best,
    no_completed_trial,
    quiet_optuna,
    trial_overrides,
)
from nodecli.sweep.table import collect_results, job_errors, summary_table

SWEEP_HELP = """\
usage: nodecli sweep [-m] [group=a,b ...] [key=x,y ...] [sweep.resume=DIR] [hydra.* ...]

Runs every combination of the comma-separated values (Hydra multirun) under
outputs/sweeps/<date>/<time>/<num>_<overrides>/ (jobs numbered from 0), then prints a
summary of every job. One line per job; sweep.verbose=true adds each job's epoch lines
and table, as `nodecli train` prints them. Exit code 0 when every job completed, 1 when
any failed, 2 for a bad command line or folder, 128 + signal when stopped (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP).

  nodecli sweep sensealg=adjoint,direct seed=0,1,2 train.epochs=2
  nodecli sweep sweep.resume=outputs/sweeps/2026-01-01/12-00-00   # re-run failed jobs
  nodecli sweep sensealg=adjoint,direct hydra/launcher=joblib hydra.launcher.n_jobs=4
  nodecli sweep sensealg=adjoint,direct hydra/launcher=submitit_slurm \\
      hydra.launcher.partition=gpu hydra.launcher.timeout_min=60
"""


#: Launchers whose jobs run in child processes of `nodecli sweep` on this machine.
LOCAL_CHILDREN = ("hydra/launcher=joblib", "hydra/launcher=submitit_local")


def refuse_live_jobs(plan: SweepPlan) -> None:
    """Resuming while a job of the sweep still runs would train it twice at once."""
    for num, job in enumerate(plan.jobs):
        job_dir = find_job_dir(plan.sweep_dir, num, job, plan.job_dirs)
        if job_dir is None or not (job_dir / RUN_FILE).is_file():
            continue
        try:
            info = read_run_json(job_dir)
        except ValueError:
            continue
        state, age = run_state(info)
        if state == "running":
            raise ConfigError(
                f"job {num} ({job_dir}) is still running (pid {info.get('pid')} on "
                f"{info.get('host')}, last heartbeat {age:.0f} s ago); wait for it or stop it "
                "before resuming"
            )


def resume_command(plan: SweepPlan) -> str:
    """The command that continues PLAN's sweep, quoted to paste into a shell."""
    return f"nodecli sweep {shell_override(RESUME_KEY, str(plan.sweep_dir))}"


def write_sweep_file(plan: SweepPlan) -> None:
    """sweep.json: the plan, so `sweep.resume=DIR` alone re-runs the same jobs."""
    stored = read_sweep_file(plan.sweep_dir)
    record = {
        "created_at": stored.get("created_at", now_iso()),
        "resumed_at": [*stored.get("resumed_at", []), *([now_iso()] if plan.resume else [])],
        "job_overrides": plan.job_args,
        "hydra_overrides": plan.hydra_overrides,
        "n_jobs": plan.search.n_trials if plan.search else len(plan.jobs),
        "jobs": plan.jobs,
        **({"job_dirs": plan.job_dirs} if plan.job_dirs else {}),
        **({"job_configs": plan.job_configs} if plan.job_configs else {}),
        "verbose": plan.verbose,
    }
    if plan.search:  # the jobs are Optuna's trials, filled in as they run
        record["objective"] = plan.search.objective
    ensure_owned(plan.sweep_dir)
    atomic_write_text(plan.sweep_dir / SWEEP_FILE, json.dumps(record, indent=2) + "\n")


def register_sweeper(completed: set[int]) -> None:
    """Make conf/config.yaml's `hydra/sweeper=nodecli` known to Hydra: its plugin scan
    finds `hydra_plugins` modules in site-packages but not in an editable install, so
    register it the way Hydra documents (Plugins.register), here where every job has been
    validated (the one thing the sweeper relies on)."""
    from hydra_plugins.nodecli_sweeper import ValidatedSweeper

    ValidatedSweeper.completed = frozenset(completed)
    register_plugin(ValidatedSweeper)


def sweep_command(args: list[str]) -> int:
    # The jobs are the work, the output only a view of it: a closed pipe must not stop
    # them (`nodecli sweep … | head` never ran job 1 and wrote no summary).
    with output_never_stops_work():
        return _sweep_command(args)


def _sweep_command(args: list[str]) -> int:
    # Imported here: rich's console is only needed once a sweep really runs.
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
    if not plan.dir_given:
        plan.sweep_dir = new_sweep_dir()
    claim_folder(plan.sweep_dir, "a nodecli sweep")
    if not plan.resume and folder_entries(plan.sweep_dir):  # filled since it was planned
        raise ConfigError(
            f"hydra.sweep.dir={plan.sweep_dir} is no longer empty; another sweep wrote into it"
        )
    if plan.resume:
        refuse_live_jobs(plan)  # under the claim: no other sweep can start one meanwhile
        plan.completed = completed_jobs(plan.sweep_dir, plan.jobs, plan.job_dirs)
    write_sweep_file(plan)
    console = make_console()
    verb = "resuming" if plan.resume else "running"
    if plan.search:
        quiet_optuna()
        s = plan.search
        print(
            f"[sweep] searching with Optuna: {s.n_trials} trial(s), numbered from 0, to "
            f"{s.direction} {s.objective} ({OBJECTIVES[s.objective][1]}), in {plan.sweep_dir}",
            flush=True,
        )
    else:
        print(
            f"[sweep] {verb} {len(plan.jobs)} job(s), numbered from 0, in {plan.sweep_dir}",
            flush=True,
        )
    launcher = [o for o in plan.hydra_overrides if o.startswith("hydra/launcher=")]
    if launcher and launcher[-1] != "hydra/launcher=basic":
        # Jobs print their own start line in the launcher's processes / logs.
        for num, job in enumerate(plan.jobs):
            label = " ".join(job) or "(defaults)"
            print(f"[sweep] job {num} (of {len(plan.jobs)}) queued: {label}", flush=True)
    hydra_args = [
        "--multirun",
        *plan.hydra_overrides,
        *([f"hydra.sweeper.direction={plan.search.direction}"] if plan.search else []),
        *plan.job_args,
        f"hydra.sweep.dir={quote_override_value(str(plan.sweep_dir))}",
    ]
    register_sweeper(plan.completed)
    interrupted = launcher_failed = False
    stopped_by: int | None = None
    # The basic launcher's jobs take the signal themselves; SLURM jobs are not children
    # and keep running when `nodecli sweep` is killed (sweep.resume picks them up).
    forward = ForwardStop()
    try:
        with forward if launcher and launcher[-1] in LOCAL_CHILDREN else contextlib.nullcontext():
            run_hydra(sweep_task, hydra_args, plan.sweep_dir)
    except KeyboardInterrupt:
        interrupted = True
    except PluginError as exc:  # the launcher or sweeper gave up; the summary still follows
        launcher_failed = True
        if not (plan.search and no_completed_trial(exc.original)):
            print(f"nodecli: error: {exc}", file=sys.stderr, flush=True)
    except SystemExit as exc:  # a job stopped by a signal, or Hydra's own error exit
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
        if code >= 128:
            stopped_by = code
        elif code != 0:
            launcher_failed = True
            print(f"[sweep] the launcher stopped with exit code {exc.code}", flush=True)
    if forward.signum is not None and stopped_by is None:  # the jobs stopped in children
        stopped_by = 128 + forward.signum
    trials = numbered_folders(plan.sweep_dir) if plan.search else {}
    if plan.search:  # the trials Optuna ran, read back from their folders
        plan.jobs = [trial_overrides(path) for _, path in sorted(trials.items())]
        write_sweep_file(plan)
    results = collect_results(plan)
    console.print(summary_table(plan, results))
    for line in job_errors(results):
        console.print(line, markup=False)
    if plan.search:
        print(describe_best(trials, plan.search), flush=True)
    failed = [r for r in results if r.status != "completed"]
    if interrupted:
        raise KeyboardInterrupt
    if stopped_by is not None:
        then = (  # sweep.resume refuses searches: advise only what works
            "an Optuna search cannot be continued; start a new one (`nodecli report` reads both)"
            if plan.search
            else f"continue with `{resume_command(plan)}`"
        )
        print(
            f"[sweep] stopped; {len(failed)} of {len(results)} job(s) did not complete; {then}",
            flush=True,
        )
        return stopped_by
    if failed:
        again = (
            "start a new search to try again"
            if plan.search
            else f"re-run them with `{resume_command(plan)}`"
        )
        print(f"[sweep] {len(failed)} of {len(results)} job(s) did not complete; {again}")
        return EXIT_FAILED
    if launcher_failed:  # no job failed, but not every job ran either
        print(f"[sweep] the sweep stopped early after {len(results)} job(s)")
        return EXIT_FAILED
    print(
        f"[sweep] all {len(results)} job(s) completed; compare them with "
        f"`nodecli report {shlex.quote(str(plan.sweep_dir))}`"
    )
    return EXIT_OK
