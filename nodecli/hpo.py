"""Hyper-parameter search: `nodecli sweep hydra/sweeper=optuna …` with Hydra's Optuna sweeper.

Optuna picks each trial's values, so the jobs of such a sweep are not known in advance:
the plan holds the number of trials and the objective, and a few *probe* jobs (every
searched key at its bounds or choices) are composed and validated before anything runs,
so a typo or an out-of-range bound is still one line and exit 2. Each trial is a normal
nodecli run record, which `nodecli report` reads; the job returns its objective read
back from that record, which is what the sweeper maximises or minimises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import OmegaConf

from nodecli.errors import ConfigError
from nodecli.hydra_app import parse_overrides
from nodecli.runs import METRICS_FILE, RUN_FILE, read_metrics, read_run_json

OPTUNA = "hydra/sweeper=optuna"
OBJECTIVE_KEY = "sweep.objective"
HPO_EXTRA = "pip install 'nodecli[hpo]'"
DEFAULT_TRIALS = 20  # Hydra's Optuna sweeper's own default n_trials

# objective → (direction, what it reads from metrics.csv)
OBJECTIVES = {
    "test_acc": ("maximize", "final test accuracy (%)"),
    "train_acc": ("maximize", "final training accuracy (%)"),
    "epoch_time": ("minimize", "median epoch time (s) over epochs 2..N (epoch 1 if N = 1)"),
    "train_time": ("minimize", "total training time (s)"),
}


@dataclass
class Search:
    """What an Optuna sweep is asked to do."""

    objective: str
    direction: str
    n_trials: int
    probes: list[list[str]]  # jobs composed before the sweep to validate the search space


def is_search(hydra_overrides: list[str]) -> bool:
    return OPTUNA in hydra_overrides


def plan_search(job: list[str], hydra: list[str], objective: str | None) -> Search:
    """The search a command line asks for; ConfigError (one line) when it cannot work."""
    name = objective or "test_acc"
    if name not in OBJECTIVES:
        raise ConfigError(
            f"{OBJECTIVE_KEY}={name} is not an objective; valid: {', '.join(OBJECTIVES)}"
        )
    n_trials = DEFAULT_TRIALS
    direction = OBJECTIVES[name][0]
    for override in parse_overrides(hydra):
        key = override.get_key_element()
        if key == "hydra.sweeper.n_trials":
            n_trials = int(override.value())
        elif key == "hydra.sweeper.direction":
            raise ConfigError(
                f"{OBJECTIVE_KEY} sets the direction ({name}: {direction}); "
                "leave out hydra.sweeper.direction"
            )
    if n_trials < 1:
        raise ConfigError(f"hydra.sweeper.n_trials={n_trials} runs no trial; give at least 1")
    probes = probe_jobs(job)
    return Search(name, direction, n_trials, probes)


def probe_jobs(job: list[str]) -> list[list[str]]:
    """Jobs that put every searched key at each of its bounds / choices (cycling), so each
    value a trial can take is composed and validated once before the sweep starts."""
    values: list[tuple[str, list[str]]] = []
    for text, override in zip(job, parse_overrides(job), strict=True):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values.append((key, [text.split("=", 1)[1]]))
            continue
        sweep = override.value()
        if isinstance(sweep, ChoiceSweep):  # a,b or choice(a,b)
            options = [str(v) for v in sweep.list]
        elif isinstance(sweep, IntervalSweep):  # interval(a,b), tag(log,interval(a,b))
            options = [str(sweep.start), str(sweep.end)]
        elif isinstance(sweep, RangeSweep):  # range(a,b[,step]): its first and last value
            every = [str(v) for v in override.sweep_iterator()]
            options = every[:1] + every[-1:] if len(every) > 1 else every
        else:
            raise ConfigError(f"cannot search over '{text}': use interval(a,b), range or a,b")
        if not options:
            raise ConfigError(f"'{text}' offers the search no value")
        values.append((key, options))
    if not values:
        return [[]]
    n = max(len(options) for _, options in values)
    return [[f"{key}={options[i % len(options)]}" for key, options in values] for i in range(n)]


def objective_value(job_dir: Path, objective: str) -> float:
    """OBJECTIVE read back from JOB_DIR's record; NaN when the run did not complete or
    finished no epoch."""
    try:
        if read_run_json(job_dir).get("status") != "completed":
            return math.nan
        metrics = read_metrics(job_dir / METRICS_FILE)
    except ValueError:
        return math.nan
    if metrics.empty:
        return math.nan
    if objective == "test_acc":
        return float(metrics["test_acc"].iloc[-1])
    if objective == "train_acc":
        return float(metrics["train_acc"].iloc[-1])
    times = metrics["train_time_s"]
    if objective == "train_time":
        return float(times.sum())
    return float(times.iloc[1:].median() if len(times) > 1 else times.iloc[0])


def quiet_optuna() -> None:
    """Optuna logs each study and trial at INFO level; nodecli prints its own lines."""
    # Imported here: only a search needs optuna (and it is an optional dependency).
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def trial_result(job_dir: Path, objective: str) -> float | None:
    """What a trial returns to the Optuna sweeper: the objective, or None for a failed
    trial. (NaN would make Hydra's sweeper tell Optuna twice and stop with a traceback;
    None is its way to mark one trial failed and go on.)"""
    value = objective_value(job_dir, objective)
    return None if math.isnan(value) else value


def trial_overrides(job_dir: Path) -> list[str]:
    """The overrides Optuna gave a trial, from the .hydra/overrides.yaml Hydra wrote."""
    try:
        return [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
    except Exception:  # noqa: BLE001 - unreadable: the trial shows without overrides
        return []


def describe_best(trials: dict[int, Path], search: Search) -> str:
    """Lines naming the best trial of TRIALS (job number → folder), or saying there is none."""
    best = best_trial(trials, search)
    if best is None:
        return f"[sweep] no trial completed, so there is no best {search.objective}"
    num, path, value = best
    return (
        f"[sweep] best trial: job {num}, {search.objective} = {value:.6g} "
        f"({search.direction}d over the completed trials): {' '.join(trial_overrides(path))}\n"
        f"        record: {path}"
    )


def best_trial(trials: dict[int, Path], search: Search) -> tuple[int, Path, float] | None:
    """(job number, folder, objective) of the best completed trial, as the sweeper saw it."""
    scored = [
        (num, path, objective_value(path, search.objective))
        for num, path in sorted(trials.items())
        if (path / RUN_FILE).exists()
    ]
    scored = [s for s in scored if not math.isnan(s[2])]
    if not scored:
        return None
    pick = max if search.direction == "maximize" else min
    return pick(scored, key=lambda s: s[2])
