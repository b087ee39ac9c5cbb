"""An Optuna search space as typed on the command line, read with Hydra's override
grammar: the sweeper's own settings (n_trials, n_jobs, the sampler's seed, storage), what
each sampler accepts, and the *probe* jobs (every searched key at its bounds or choices)
that `nodecli sweep` composes and validates before a trial runs. Here, in config/, because
only this package reads Hydra's override types; nodecli.sweep.search plans the search."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nodecli.config.overrides import parse_overrides
from nodecli.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep

OBJECTIVE_KEY = "sweep.objective"
DEFAULT_TRIALS = 20  # Hydra's Optuna sweeper's own default n_trials
TRIALS_KEY = "hydra.sweeper.n_trials"
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
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

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


def check_search_settings(job: list[str], hydra: list[str], direction: str) -> int:
    """The number of trials HYDRA's overrides ask for; ConfigError (one line) for a
    setting Optuna cannot take, a search space the chosen sampler cannot search, or a
    JOB with nothing to search. DIRECTION ("test_acc: maximize") is what sweep.objective
    sets, named when hydra.sweeper.direction is given too."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    n_trials = DEFAULT_TRIALS
    for text, override in zip(hydra, parse_overrides(hydra), strict=True):
        key = override.get_key_element()
        if key in INT_SETTINGS:
            value = check_int_setting(text, override)
            if key == TRIALS_KEY and value is not None:  # not nullable: never None
                n_trials = value
        elif key == "hydra.sweeper.direction":
            raise ConfigError(
                f"{OBJECTIVE_KEY} sets the direction ({direction}); "
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
    return n_trials
