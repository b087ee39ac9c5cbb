"""Hydra plumbing every command shares: conf/ location, compose + validate, running a
task under Hydra's own main, override quoting, the environment checks and Hydra's
argument parser.

It sits just above config.py: commands (train, sweep, gradcheck) import it, it imports
no command, so the plumbing cannot pull a command in (no import cycle).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

from nodecli.config.messages import explain_compose_error
from nodecli.config.overrides import (
    parse_overrides,
    refuse_chdir,
    refuse_deletions,
    refuse_group_lists,
    refuse_mode,
    unquoted_value_hint,
    unselected_tracker_key,
)
from nodecli.config.schema import Config, all_keys, register_schema, unknown_keys, validate
from nodecli.config.tree import conf_dir, register_resolvers
from nodecli.errors import ConfigError
from nodecli.experiment.trackers import check_trackers


@contextlib.contextmanager
def composing() -> Iterator[Callable[..., DictConfig]]:
    """Hydra's compose API on conf/ (with nodecli's schema and resolvers) for the block:
    yields `compose(overrides=…, return_hydra_config=…)`. Hydra's global state
    (GlobalHydra, HydraConfig) is as before once the block ends, also inside a job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_schema()
    register_resolvers()
    GlobalHydra.instance().clear()
    previous = HydraConfig.instance().cfg
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            yield functools.partial(compose, config_name="config")
    finally:
        HydraConfig.instance().cfg = previous  # type: ignore[assignment]
        GlobalHydra.instance().clear()


def compose_config(overrides: list[str], dtype: str = "float32", user: str = "training") -> Config:
    """Compose conf/ with OVERRIDES and validate it (its floats in DTYPE, the float type
    USER runs in); raise ConfigError with one line."""
    refuse_overrides(overrides)
    try:
        with composing() as compose:
            cfg = compose(overrides=overrides)
    except Exception as exc:  # Hydra/OmegaConf raise many types; all are bad input here
        raise compose_error(exc, overrides) from exc
    return checked_config(cfg, overrides, dtype, user)


def refuse_overrides(overrides: list[str]) -> list[Override]:
    """The overrides nodecli refuses before Hydra sees them; OVERRIDES parsed."""
    parsed = parse_overrides(overrides)
    pairs = list(zip(overrides, parsed, strict=True))
    refuse_group_lists(pairs)
    refuse_deletions(pairs)
    refuse_chdir(pairs)
    refuse_mode(pairs)
    return parsed


def compose_error(exc: Exception, overrides: list[str]) -> ConfigError:
    """Hydra's or OmegaConf's error composing OVERRIDES, as one line."""
    return ConfigError(
        unselected_tracker_key(overrides)
        or unquoted_value_hint(exc, overrides)
        or explain_compose_error(exc, conf_dir())
    )


def checked_config(
    cfg: DictConfig, overrides: list[str], dtype: str = "float32", user: str = "training"
) -> Config:
    """The Config of CFG, composed from OVERRIDES, once it has only the schema's keys and
    valid values."""
    try:
        extra = unknown_keys(cfg)
        if extra:
            close = difflib.get_close_matches(extra[0], all_keys(), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown config key '{extra[0]}'{hint} (nodecli train --help lists every key)"
            )
        config = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra/OmegaConf raise many types; all are bad input here
        raise compose_error(exc, overrides) from exc
    assert isinstance(config, Config)
    validate(config, dtype, user)
    check_trackers(config.logger)
    return config


class JobComposer:
    """compose_config for the many jobs of a sweep, at a fraction of the cost: jobs that
    differ only in values of the config's keys (seed=0,1,2 model.hidden=64,256) share
    one Hydra composition of the rest of their overrides (the group choices: the defaults
    tree, the YAML, the merges), and each job's values are set on a copy of it by Hydra's
    own override code, as Hydra sets them after composing. A job with any other override
    (+key, ~key, group=dict, a sweep, a key outside the config) is composed on its own, and so
    is a job whose shortcut raises anything: every Config and every error is the one
    compose_config returns or raises for the job's overrides."""

    def __init__(self) -> None:
        self._shared: dict[tuple[str, ...], DictConfig | None] = {}
        self._groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
        self._sections = {f.name for f in fields(Config)}  # model.field._target_ too

    def __call__(self, overrides: list[str]) -> Config:
        try:
            config = self._shortcut(overrides)
        except Exception:  # noqa: BLE001 - the job's own composition says what is wrong
            config = None
        return config if config is not None else compose_config(overrides)

    def _shortcut(self, overrides: list[str]) -> Config | None:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.core.override_parser.types import OverrideType

        parsed = refuse_overrides(overrides)
        rest: list[str] = []
        values: list[Override] = []
        for text, override in zip(overrides, parsed, strict=True):
            plain = override.type == OverrideType.CHANGE and override.package is None
            key = override.key_or_group
            if (
                plain
                and not override.is_sweep_override()
                and key not in self._groups
                and key.split(".")[0] in self._sections
            ):
                values.append(override)
            elif override.is_hydra_override() or (
                plain and key in self._groups and isinstance(override.value(), str | list)
            ):
                # Hydra's settings (its own node, dropped from the job's config) and group
                # choices (the defaults tree): nothing they set is a value's key, so
                # setting the values after them sets what Hydra sets.
                rest.append(text)
            else:
                return None  # +key, ~key, key={...}: order matters, compose it on its own
        key = tuple(rest)
        if key not in self._shared:
            try:
                with composing() as compose:
                    self._shared[key] = compose(overrides=rest)
            except Exception:  # noqa: BLE001 - composed on its own, job by job
                self._shared[key] = None
        shared = self._shared[key]
        if shared is None:
            return None
        cfg = copy.deepcopy(shared)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return checked_config(cfg, overrides)


def resolve_hydra_dir(key: str, overrides: list[str]) -> str:
    """KEY (hydra.run.dir or hydra.sweep.dir) as Hydra would resolve it under OVERRIDES
    (`runs/seed_${seed}`, `${now:%Y-%m-%d}`, `${oc.env:HOME}`). The caller claims and
    checks this folder and hands it to Hydra as given, so both mean the same one: a
    folder checked under its unresolved name may not be the one Hydra writes into."""
    from hydra.core.hydra_config import HydraConfig

    try:
        with composing() as compose:
            cfg = compose(overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # for ${hydra:…}
            value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception as exc:  # noqa: BLE001 - any resolver or Hydra error: bad input
        raise ConfigError(f"{key}: cannot resolve it ({str(exc).splitlines()[0]})") from exc
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} resolves to {value!r}, not a folder name")
    return value


def resolve_sweep_subdirs(hydra_overrides: list[str], jobs: list[list[str]]) -> list[list[str]]:
    """Each job's hydra.sweep.subdir as Hydra resolves it when it launches the job, once
    under each job id a launcher may give (the basic launcher's `N`, joblib's
    `nodecli_N`): two different names mean a folder a resume could not find again.
    ConfigError (one line) when the subdir cannot be resolved for a job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    resolved: list[list[str]] = []
    with composing() as compose:
        for num, job in enumerate(jobs):
            composed = compose(overrides=[*hydra_overrides, *job], return_hydra_config=True)
            names = []
            for job_id in (f"{num}", f"nodecli_{num}"):
                cfg = copy.deepcopy(composed)  # set_config makes its argument read-only
                with open_dict(cfg):
                    cfg.hydra.job.num = num
                    cfg.hydra.job.id = job_id
                HydraConfig.instance().set_config(cfg)
                try:
                    names.append(str(cfg.hydra.sweep.subdir))
                except Exception as exc:  # an interpolation that cannot resolve
                    first = str(exc).strip().splitlines()[0]
                    raise ConfigError(
                        f"hydra.sweep.subdir cannot be resolved for job {num} ({first}); use "
                        "keys of the config, ${hydra.job.num} or ${hydra.job.override_dirname}"
                    ) from None
            resolved.append(names)
    return resolved
