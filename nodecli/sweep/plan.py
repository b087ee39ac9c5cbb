"""What a `nodecli sweep` command line means: the sweep folder, its jobs (expanded with
Hydra's own override parser and BasicSweeper, so job i is hydra.job.num == i) and the
Hydra overrides, plus the stored plan (sweep.json) that `sweep.resume` continues.

Everything here only reads: the plan is decided, and refused if need be, before the
sweep writes anything.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nodecli.config.compose import JobComposer, resolve_hydra_dir
from nodecli.config.environment import check_environment, require_package
from nodecli.config.messages import missing_plugin
from nodecli.config.overrides import expand_jobs, parse_overrides, shell_override
from nodecli.config.schema import Config, config_from_tree
from nodecli.errors import ConfigError
from nodecli.record.layout import MULTIRUN_FILE, RUN_FILE, SWEEP_FILE, folder_entries
from nodecli.record.read import flatten, read_config_tree
from nodecli.sweep.folders import (
    FOLDER_KEYS,
    check_plan_matches_folders,
    custom_folders,
    find_job_dir,
    numbered_folders,
    resolve_job_dirs,
)
from nodecli.sweep.search import (
    HPO_EXTRA,
    OBJECTIVE_KEY,
    OBJECTIVES,
    OPTUNA,
    Search,
    is_search,
    plan_search,
)

RESUME_KEY = "sweep.resume"
VERBOSE_KEY = "sweep.verbose"  # true: every job's epoch lines and table, as `train` prints
SWEEP_KEYS = (RESUME_KEY, OBJECTIVE_KEY, VERBOSE_KEY)  # nodecli sweep's own keys


@dataclass
class SweepPlan:
    """What a sweep command line means: where, which jobs, with which Hydra overrides."""

    sweep_dir: Path
    jobs: list[list[str]]
    hydra_overrides: list[str] = field(default_factory=list)
    resume: bool = False
    dir_given: bool = False
    job_args: list[str] = field(default_factory=list)  # as typed: sweep lists unexpanded
    search: Search | None = None  # hydra/sweeper=optuna: jobs are Optuna's trials
    job_dirs: list[str] = field(default_factory=list)  # a custom subdir's folder per job
    verbose: bool = False  # sweep.verbose=true: each job prints what `train` prints
    #: each job's composed config, flattened (stored in sweep.json; resume compares)
    job_configs: list[dict[str, Any]] = field(default_factory=list)
    #: jobs a resume skips (already completed): Hydra writes nothing into their folders
    completed: set[int] = field(default_factory=set)

    @property
    def job_overrides(self) -> list[str]:
        return [o for job in self.jobs for o in job]


def new_sweep_dir() -> Path:
    """outputs/sweeps/<date>/<time>, with -2, -3 … when another sweep took that second."""
    now = datetime.now()
    base = Path("outputs") / "sweeps" / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            if not candidate.parent.is_dir():
                raise
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json if it is a well-formed plan; {} when it is missing, damaged or of the
    wrong shape (resume then rebuilds the plan from Hydra's multirun.yaml)."""
    try:
        data = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    lists = ("job_overrides", "hydra_overrides", "resumed_at", "job_dirs")
    if not all(_str_list(data.get(key, [])) for key in lists):
        return {}
    if not isinstance(data.get("n_jobs", 0), int):
        return {}
    return data


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def rebuild_from_hydra(sweep_dir: Path) -> dict[str, Any]:
    """The stored plan's command-line part, from the multirun.yaml Hydra wrote; {} if
    there is none or it is unreadable."""
    try:
        overrides = OmegaConf.load(sweep_dir / MULTIRUN_FILE).hydra.overrides
        task = [str(o) for o in overrides.task]
        hydra = [
            str(o)
            for o in overrides.hydra
            if not str(o).startswith(("hydra.sweep.dir=", "hydra.mode="))
        ]
    except Exception:  # noqa: BLE001 - missing or damaged YAML: nothing to rebuild from
        return {}
    return {"job_overrides": task, "hydra_overrides": hydra}


def plan_sweep(overrides: list[str]) -> SweepPlan:
    """Split the command line into job / Hydra / resume parts and decide the sweep dir."""
    plan, verbose = _plan_sweep(overrides)
    plan.verbose = verbose
    return plan


def _plan_sweep(overrides: list[str]) -> tuple[SweepPlan, bool]:
    parsed = parse_overrides(overrides)
    resume: str | None = None
    sweep_dir: str | None = None
    objective: str | None = None
    job: list[str] = []
    fixed: list[str] = []  # job overrides that are not lists: the same in every job
    hydra: list[str] = []
    sweep_dir_text = ""
    verbose = False
    for text, override in zip(overrides, parsed, strict=True):
        key = override.get_key_element()
        if key == VERBOSE_KEY:
            value = override.value()
            if override.is_sweep_override() or not isinstance(value, bool):
                raise ConfigError(f"{text} is not valid; valid: {VERBOSE_KEY}=true or false")
            verbose = value
        elif key == OBJECTIVE_KEY:
            value = override.value()
            if override.is_sweep_override() or not isinstance(value, str):
                raise ConfigError(
                    f"{text} is not valid: a search optimises one objective; "
                    f"valid: {OBJECTIVE_KEY}=NAME, NAME one of {', '.join(OBJECTIVES)}"
                )
            objective = value
        elif key == RESUME_KEY:
            value = override.value()
            if override.is_sweep_override():
                raise ConfigError(f"{RESUME_KEY} takes one sweep directory, not a list")
            if value is None or value == "":
                raise ConfigError(
                    f"{text} names no sweep directory; valid: "
                    f"{RESUME_KEY}=outputs/sweeps/<date>/<time> (a folder a sweep wrote)"
                )
            resume = value if isinstance(value, str) else text.split("=", 1)[1]
        elif key.startswith("sweep."):
            close = difflib.get_close_matches(key, SWEEP_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(SWEEP_KEYS)}"
            raise ConfigError(f"unknown sweep key '{key}'; {hint}")
        elif key == "hydra.sweep.dir":
            sweep_dir = str(override.value())
            sweep_dir_text = text
        elif key.lstrip("+~").startswith("hydra.sweeper.params"):
            # Jobs given there would bypass the plan and its validation (lr=-1 would train).
            raise ConfigError(
                f"{text}: give what to sweep or search as overrides of the config keys "
                "(train.lr=0.001,0.01 or train.lr='interval(1e-4,1e-2)'), not in "
                "hydra.sweeper.params"
            )
        elif key.lstrip("+~").startswith(("hydra.", "hydra/")):
            if override.is_sweep_override():  # Hydra's error blamed the first job for it
                raise ConfigError(
                    f"{text}: Hydra's own settings take one value for the whole sweep, not a "
                    "list or range; sweep config keys instead (e.g. seed=0,1,2)"
                )
            hydra.append(text)
        else:
            job.append(text)
            if not override.is_sweep_override():
                fixed.append(text)
    if sweep_dir is not None and "${" in sweep_dir:
        # Resolved as Hydra resolves it, once, from the overrides every job shares.
        sweep_dir = resolve_hydra_dir("hydra.sweep.dir", [*hydra, *fixed, sweep_dir_text])
    if objective is not None and not is_search(hydra):
        raise ConfigError(f"{OBJECTIVE_KEY} is for searches: add {OPTUNA}")
    if resume is not None:
        if is_search(hydra) or read_sweep_file(Path(resume)).get("objective"):
            raise ConfigError(
                f"{RESUME_KEY} cannot continue an Optuna search (its sampler state lived in "
                "the sweep's process); start a new search, `nodecli report` reads both"
            )
        return _plan_resume(Path(resume), resume, sweep_dir, job, hydra), verbose
    if is_search(hydra):
        search = plan_search(job, hydra, objective)
        given = Path(sweep_dir) if sweep_dir is not None else Path()
        if sweep_dir is not None:
            refuse_used_sweep_dir(given, sweep_dir)
        return SweepPlan(
            given, [], hydra, dir_given=sweep_dir is not None, job_args=job, search=search
        ), verbose
    if sweep_dir is not None:
        given = Path(sweep_dir)
        refuse_used_sweep_dir(given, sweep_dir)
        return SweepPlan(given, expand_jobs(job), hydra, dir_given=True, job_args=job), verbose
    return SweepPlan(Path(), expand_jobs(job), hydra, job_args=job), verbose


def refuse_used_sweep_dir(given: Path, sweep_dir: str) -> None:
    """A new sweep starts only in an empty or new folder."""
    if given.is_dir() and any(given.glob(f"*/{RUN_FILE}")):
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} already holds runs; resume it with "
            f"`nodecli sweep {shell_override(RESUME_KEY, sweep_dir)}` or choose a new directory"
        )
    foreign = folder_entries(given)
    if foreign:
        raise ConfigError(
            f"hydra.sweep.dir={sweep_dir} is not empty ({', '.join(foreign[:3])}); "
            "choose an empty or new directory"
        )


def _plan_resume(
    resume_dir: Path, resume: str, sweep_dir: str | None, job: list[str], hydra: list[str]
) -> SweepPlan:
    where = f"{RESUME_KEY}={resume}"
    if not resume_dir.is_dir():
        raise ConfigError(f"{where}: no such sweep directory")
    if sweep_dir is not None and Path(sweep_dir).resolve() != resume_dir.resolve():
        raise ConfigError(f"{RESUME_KEY} and hydra.sweep.dir name different directories")
    stored = read_sweep_file(resume_dir) or rebuild_from_hydra(resume_dir)
    if not stored:
        what = (
            "no job folder" if not numbered_folders(resume_dir) else f"no readable {MULTIRUN_FILE}"
        )
        raise ConfigError(
            f"{where}: its {SWEEP_FILE} is missing or damaged and there is {what} to "
            "rebuild the plan from; nothing was changed"
        )
    stored_job = list(stored.get("job_overrides", []))
    hydra = merge_hydra_overrides(list(stored.get("hydra_overrides", [])), hydra, where)
    if not job:  # `nodecli sweep sweep.resume=DIR` alone: the stored command line
        job = stored_job
    elif sorted(job) != sorted(stored_job):
        # Other jobs would get other numbers, hence other folders: refuse.
        raise ConfigError(
            f"{where} was run with {' '.join(stored_job) or 'no overrides'}; "
            f"resume it with the same overrides or with {RESUME_KEY} alone"
        )
    else:
        job = stored_job  # the same overrides, in the stored order (same job numbers)
    jobs = expand_jobs(job)
    n_stored = stored.get("n_jobs")
    if isinstance(n_stored, int) and n_stored != len(jobs):
        raise ConfigError(
            f"{where}: {SWEEP_FILE} says {n_stored} job(s), its command line "
            f"{len(jobs)}; the plan is inconsistent; nothing was changed"
        )
    if not custom_folders(hydra):  # else once the folders are resolved (validate_jobs)
        check_plan_matches_folders(resume_dir, jobs, where)
    # The folders the sweep's jobs used (a custom subdir's), for validate_jobs to compare.
    stored_dirs = list(stored.get("job_dirs", []))
    return SweepPlan(resume_dir, jobs, hydra, True, True, job, job_dirs=stored_dirs)


def check_configs_unchanged(plan: SweepPlan, configs: list[dict[str, Any]]) -> None:
    """A resume runs every job with the config the sweep planned for it: each job's config
    composed now must equal the one sweep.json stored (or, for a sweep planned before it
    stored them, the job's own .hydra/config.yaml). A default changed in conf/ since would
    have re-run jobs with it and rewritten skipped jobs' configs: refuse, one line."""
    stored = read_sweep_file(plan.sweep_dir).get("job_configs")
    where = f"{RESUME_KEY}={plan.sweep_dir}"
    for num, now in enumerate(configs):
        then: dict[str, Any] | None = None
        source = f"{SWEEP_FILE}"
        if isinstance(stored, list) and num < len(stored) and isinstance(stored[num], dict):
            then = stored[num]
        else:
            job_dir = find_job_dir(plan.sweep_dir, num, plan.jobs[num], plan.job_dirs)
            if job_dir is not None and (job_dir / ".hydra" / "config.yaml").is_file():
                try:
                    tree = config_from_tree(read_config_tree(job_dir))
                except (ValueError, ConfigError) as exc:
                    raise ConfigError(
                        f"{where}: job {num}'s .hydra/config.yaml is damaged ({exc}); "
                        "nothing was changed"
                    ) from exc
                then = json.loads(json.dumps(flatten(asdict(tree)), default=str))
                source = f"job {num}'s .hydra/config.yaml"
        if then is None:
            continue
        for key in sorted(now.keys() | then.keys()):
            if key != "resume" and now.get(key) != then.get(key):
                raise ConfigError(
                    f"{where}: job {num} was planned with {key}={then.get(key)} ({source}), "
                    f"but composes to {key}={now.get(key)} now (a default in conf/ changed?); "
                    "resuming would change the experiment half-way; nothing was changed"
                )


LAUNCHER_GROUP = "hydra/launcher"


def merge_hydra_overrides(stored: list[str], given: list[str], where: str) -> list[str]:
    """The Hydra overrides a resume runs with: the sweep's own, with those GIVEN replacing
    the stored ones of the same key (another launcher, other launcher settings); a GIVEN
    deletion (~key) of a stored addition removes it. A new launcher drops the old one's
    `hydra.launcher.*` settings; the keys that name the job folders may not change."""
    if not given:
        return stored
    new = {o.key_or_group: (text, o) for text, o in zip(given, parse_overrides(given), strict=True)}
    old = {o.key_or_group: text for text, o in zip(stored, parse_overrides(stored), strict=True)}
    for key, (text, _) in new.items():
        if key.startswith(FOLDER_KEYS) and old.get(key) != text:
            raise ConfigError(
                f"{where}: {text} would move every job to another folder than the sweep's "
                f"({old.get(key, 'its default')}); resume without it"
            )
    launcher = new.get(LAUNCHER_GROUP, ("", None))[0]
    new_launcher = bool(launcher) and launcher != old.get(LAUNCHER_GROUP)
    kept = [
        text
        for key, text in old.items()
        if key not in new and not (new_launcher and key.startswith("hydra.launcher."))
    ]
    added = [
        text
        for key, (text, override) in new.items()
        # deleting what the sweep itself added: leave it out, there is nothing else to delete
        if not (override.is_delete() and old.get(key, "").startswith("+"))
    ]
    return [*kept, *added]


# The library each Hydra plugin imports only when the sweep starts (plugin choice →
# module, extra): a plugin's config can be installed while its library is not.
PLUGIN_LIBRARIES = {
    "hydra/launcher=joblib": ("joblib", "pip install 'nodecli[launchers]'"),
    "hydra/launcher=submitit_local": ("submitit", "pip install 'nodecli[launchers]'"),
    "hydra/launcher=submitit_slurm": ("submitit", "pip install 'nodecli[launchers]'"),
    "hydra/sweeper=optuna": ("optuna", HPO_EXTRA),
}


def check_plugin_libraries(hydra_overrides: list[str]) -> None:
    """The chosen launcher's / sweeper's library is installed: one line naming the extra
    if not, before the sweep folder is written: without it every job would fail (submitit,
    joblib) or a traceback would end the search (optuna)."""
    for choice in hydra_overrides:
        if choice in PLUGIN_LIBRARIES:
            require_package(choice, *PLUGIN_LIBRARIES[choice])


def check_same_folders(plan: SweepPlan, job_dirs: list[str]) -> None:
    """A resume under a custom subdir uses the folders the sweep used (PLAN.job_dirs, from
    sweep.json) when JOB_DIRS, those resolved now, would differ: `hydra.job.name=…` or
    another launcher may change what the subdir reads."""
    where = f"{RESUME_KEY}={plan.sweep_dir}"
    for num, (before, now) in enumerate(zip(plan.job_dirs, job_dirs, strict=False)):
        if before != now:
            raise ConfigError(
                f"{where}: job {num} would move from folder {before!r} to {now!r} (an override "
                "given with the resume changes hydra.sweep.subdir's value); resume without it"
            )
    check_plan_matches_folders(plan.sweep_dir, plan.jobs, where, job_dirs)


def validate_jobs(plan: SweepPlan) -> list[Config]:
    """Compose and validate every job (with the Hydra overrides), then check the machine."""
    check_plugin_libraries(plan.hydra_overrides)
    configs = []
    jobs = plan.search.probes if plan.search else plan.jobs
    compose_job = JobComposer()  # compose_config per job, sharing their group choices
    for job in jobs:
        try:
            configs.append(compose_job([*plan.hydra_overrides, *job]))
        except ConfigError as exc:
            plugin = missing_plugin(str(exc), HPO_EXTRA)
            if plugin:
                raise ConfigError(plugin) from exc
            where = f" (in job {' '.join(job)})" if len(jobs) > 1 else ""
            raise ConfigError(f"{exc}{where}") from exc
    if not plan.search:
        job_dirs = resolve_job_dirs(plan.hydra_overrides, plan.jobs)
        if plan.resume and job_dirs:
            check_same_folders(plan, job_dirs)
        plan.job_dirs = job_dirs
        flat = [json.loads(json.dumps(flatten(asdict(c)), default=str)) for c in configs]
        if plan.resume:
            check_configs_unchanged(plan, flat)
        plan.job_configs = flat
    checked = set()
    for config in configs:
        # Everything check_environment reads: jobs that differ only elsewhere (seeds, lr)
        # share one check, every other job is checked on its own.
        key = (
            config.device.name,
            config.dataset.name,
            config.dataset.root,
            config.data.n,
            config.data.split,
            config.backend.name,
            config.layer_style.name,
            config.sensealg.name,
            json.dumps(asdict(config.model), sort_keys=True, default=str),
        )
        if key not in checked:
            checked.add(key)
            check_environment(config)
    return configs
