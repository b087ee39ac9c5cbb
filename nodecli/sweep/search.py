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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import OmegaConf

from nodecli.config.overrides import parse_overrides
from nodecli.errors import ConfigError
from nodecli.record.layout import METRICS_FILE, RUN_FILE
from nodecli.record.read import read_metrics, read_run_json

OPTUNA = "hydra/sweeper=optuna"
OBJECTIVE_KEY = "sweep.objective"
HPO_EXTRA = "pip install 'nodecli[hpo]'"
DEFAULT_TRIALS = 20  # Hydra's Optuna sweeper's own default n_trials
TRIALS_KEY = "hydra.sweeper.n_trials"

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
    for text, override in zip(hydra, parse_overrides(hydra), strict=True):
        key = override.get_key_element()
        if key in INT_SETTINGS:
            value = check_int_setting(text, override)
            if key == TRIALS_KEY and value is not None:  # not nullable: never None
                n_trials = value
        elif key == "hydra.sweeper.direction":
            raise ConfigError(
                f"{OBJECTIVE_KEY} sets the direction ({name}: {direction}); "
                "leave out hydra.sweeper.direction"
            )
        elif key == "hydra.sweeper.storage":
            check_storage(text, override.value())
        elif key == "hydra.sweeper.sampler" and not override.is_delete():
            raise ConfigError(
                f"{text}: hydra.sweeper.sampler is a section; choose a sampler with "
                f"hydra/sweeper/sampler=NAME, NAME one of {', '.join(SAMPLERS)}, or set one "
                "of its keys (hydra.sweeper.sampler.seed=N)"
            )
    if f"{SAMPLER_GROUP}=grid" in hydra:
        for text, override in zip(job, parse_overrides(job), strict=True):
            if isinstance(override.value(), (IntervalSweep, RangeSweep)) and not (
                isinstance(override.value(), RangeSweep) and override.value().shuffle
            ):
                raise ConfigError(
                    f"'{text}': the grid sampler searches listed values only; valid: "
                    f"{override.get_key_element()}=a,b,c (or another sampler)"
                )
    if not any(o.is_sweep_override() for o in parse_overrides(job)):
        raise ConfigError(
            "the search has nothing to search: give at least one key a range or choices, "
            "e.g. train.lr='interval(1e-4,1e-2)' or train.batch_size=32,64,128"
        )
    probes = probe_jobs(job)
    return Search(name, direction, n_trials, probes)


SAMPLER_GROUP = "hydra/sweeper/sampler"
#: The samplers Hydra's Optuna sweeper ships (hydra/sweeper/sampler=NAME).
SAMPLERS = ("tpe", "random", "cmaes", "nsgaii", "motpe", "grid")


def check_storage(text: str, value: object) -> None:
    """An sqlite storage's folder must exist and be writable: Optuna failed only after
    the sweep folder and sweep.json were written, naming neither key nor path."""
    if value is None:
        return
    url = str(value)
    if not url.startswith("sqlite:///"):
        return  # a database server: only Optuna can tell
    path = Path(url[len("sqlite:///") :])
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        raise ConfigError(f"{text}: no folder {folder} for the database {path}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{text}: {path} is not writable; choose a writable path")


class IntSetting(NamedTuple):
    """An Optuna sweeper setting that must be a whole number in [low, high]."""

    low: int
    high: int | None
    valid: str  # the error's "valid: …" text
    nullable: bool = False


# Hydra would take these as given, or crash on them once the sweep folder exists:
# n_trials=0 ran no trial, n_jobs=0 was a ZeroDivisionError, seed=-5 Optuna's
# InstantiationException.
INT_SETTINGS = {
    TRIALS_KEY: IntSetting(
        1, None, f"a positive integer, the number of trials (e.g. {TRIALS_KEY}={DEFAULT_TRIALS})"
    ),
    "hydra.sweeper.n_jobs": IntSetting(1, None, "an integer ≥ 1, trials run at once"),
    "hydra.sweeper.sampler.seed": IntSetting(
        0, 2**32 - 1, "an integer in [0, 4294967295], the sampler's seed, or null", True
    ),
}


def check_int_setting(text: str, override: Override) -> int | None:
    """The value of one of INT_SETTINGS; ConfigError (one line) for anything else (a word,
    null where it is not allowed, a list or a sweep, a number out of range)."""
    key, given = text.split("=", 1)
    setting = INT_SETTINGS[override.get_key_element()]
    value = None if override.is_sweep_override() else override.value()
    if value is None and setting.nullable and not override.is_sweep_override():
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= setting.low and (setting.high is None or value <= setting.high):
            return value
    raise ConfigError(f"{key}={given or repr('')} is not valid; valid: {setting.valid}")


def check_interval(text: str, sweep: IntervalSweep) -> None:
    """Optuna needs low < high, and low > 0 on a log scale; it would say so only once the
    sweep folder exists, with a traceback (interval(1e-1,1e-4) typed the wrong way round)."""
    low, high = sweep.start, sweep.end
    assert low is not None and high is not None  # the grammar requires both bounds
    if not low < high:
        swapped = f", e.g. interval({high},{low})" if high < low else ""
        raise ConfigError(
            f"'{text}': the interval's low bound {low} is not below its high bound {high}; "
            f"valid: interval(low,high) with low < high{swapped}"
        )
    if "log" in sweep.tags and not low > 0:
        raise ConfigError(
            f"'{text}': a log-scale interval needs a positive low bound (got {low}); "
            "valid: tag(log,interval(low,high)) with 0 < low < high"
        )


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
            check_interval(text, sweep)
            options = [str(sweep.start), str(sweep.end)]
        elif isinstance(sweep, RangeSweep) and sweep.shuffle:  # a choice among its values
            options = [str(v) for v in override.sweep_iterator()]
        elif isinstance(sweep, RangeSweep):  # range(a,b[,step]): b included, see below
            options = search_range_bounds(text, sweep)
        else:
            raise ConfigError(f"cannot search over '{text}': use interval(a,b), range or a,b")
        if not options:
            raise ConfigError(f"'{text}' offers the search no value")
        values.append((key, options))
    if not values:
        return [[]]
    n = max(len(options) for _, options in values)
    return [[f"{key}={options[i % len(options)]}" for key, options in values] for i in range(n)]


def search_range_bounds(text: str, sweep: RangeSweep) -> list[str]:
    """The lowest and highest value Optuna may draw from range(a,b[,step]). Hydra's Optuna
    sweeper hands it b as an *included* high bound (unlike Hydra's basic sweeper, where
    range(1,3) is 1, 2), so b itself, or the last step below it, must be validated too."""
    start, stop, step = sweep.start, sweep.stop, sweep.step
    assert start is not None and stop is not None  # the grammar requires both
    if not step or step < 0 or stop < start:
        raise ConfigError(
            f"'{text}': a search needs range(low,high[,step]) with low <= high and step > 0"
        )
    last = start + math.floor((stop - start) / step + 1e-9) * step
    if isinstance(last, float):
        last = round(last, 12)  # 0.1 * 3 is 0.30000000000000004
    return [str(start)] if last == start else [str(start), str(last)]


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
