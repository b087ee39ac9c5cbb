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

from omegaconf import OmegaConf

from nodecli.config.search_space import (
    OBJECTIVE_KEY,
    check_search_settings,
    probe_jobs,
)
from nodecli.errors import ConfigError
from nodecli.record.layout import METRICS_FILE, RUN_FILE
from nodecli.record.read import read_metrics, read_run_json

OPTUNA = "hydra/sweeper=optuna"
HPO_EXTRA = "pip install 'nodecli[hpo]'"

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
    direction = OBJECTIVES[name][0]
    n_trials = check_search_settings(job, hydra, f"{name}: {direction}")
    return Search(name, direction, n_trials, probe_jobs(job))


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


def no_completed_trial(error: BaseException | None) -> bool:
    """The sweeper's own end when every trial failed (it asks Optuna for the best trial):
    nodecli's summary says so already, so it is no error of its own."""
    return isinstance(error, ValueError) and "No trials are completed yet" in str(error)


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
