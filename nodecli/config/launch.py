"""Running a command under Hydra's own main: its argument parser, job folder names, and
Hydra's failures turned into nodecli's exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    pass

from nodecli.config.schema import register_schema
from nodecli.config.tree import conf_dir, register_resolvers
from nodecli.errors import EXIT_FAILED, EXIT_USAGE, PluginError, raise_usage_errors


def hydra_arg_parser() -> argparse.ArgumentParser:
    """Hydra's own argument parser, raising instead of exiting on a bad flag."""
    from hydra._internal.utils import get_args_parser

    return raise_usage_errors(get_args_parser(), "nodecli train --help lists the options")


@dataclass(frozen=True)
class HydraJob:
    """What Hydra tells the job it is running (read from HydraConfig inside the task)."""

    output_dir: Path  # the job's own folder (hydra.runtime.output_dir)
    overrides: list[str]  # the job's command-line overrides (hydra.overrides.task)
    num: int  # its number in a sweep (hydra.job.num); 0 for a single run
    sweep_dir: Path  # the sweep's folder (hydra.sweep.dir); read only for sweep jobs


def current_job(sweep: bool = False) -> HydraJob:
    """The running Hydra job; SWEEP: a sweep job, whose sweep folder is read too (a single
    run's hydra.sweep.dir is never resolved: it may name a clock it does not need)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return HydraJob(
        output_dir=Path(hydra_cfg.runtime.output_dir),
        overrides=list(hydra_cfg.overrides.task),
        num=int(hydra_cfg.job.num) if sweep else 0,
        sweep_dir=Path(hydra_cfg.sweep.dir) if sweep else Path(),
    )


def register_plugin(plugin: type) -> None:
    """Make a Hydra plugin class (a sweeper) known to Hydra, the way Hydra documents it."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(plugin)


def run_hydra(
    task: Callable[[DictConfig], int], args: list[str], output_dir: Path | None = None
) -> None:
    """Run TASK under Hydra's own main (output dirs, .hydra/ files, launchers, --help).
    OUTPUT_DIR, when known, is named if Hydra's own writing fails without a file name."""
    import hydra
    from hydra._internal import utils as hydra_utils

    register_schema()
    register_resolvers()
    main = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)
    saved, report = sys.argv, hydra_utils.run_and_report
    sys.argv = ["nodecli", *args]
    # Hydra reports its own errors (writing .hydra/ or multirun.yaml on a full or
    # read-only disk) with a traceback; a file-system error becomes our one line instead.
    hydra_utils.run_and_report = lambda func: report(lambda: _pass_os_errors(func))
    try:
        main()
    except _HydraOSError as exc:  # re-raised here, past Hydra: cli.main prints one line
        error = exc.error
        if error.filename is None and output_dir is not None:
            error = OSError(error.errno, error.strerror, str(output_dir))
        raise error from None
    except _HydraFailure as exc:  # a plugin gave up (e.g. Optuna with no completed trial)
        raise PluginError(exc.message, exc.error) from None
    finally:
        sys.argv, hydra_utils.run_and_report = saved, report


class _HydraOSError(SystemExit):
    """Carries an OSError through Hydra's run_and_report, which lets SystemExit pass."""

    def __init__(self, error: OSError) -> None:
        super().__init__(EXIT_USAGE)
        self.error = error


class _HydraFailure(SystemExit):
    """Carries any other error raised inside Hydra or a plugin (nodecli's own tasks never
    raise) past run_and_report, which would print its traceback; cli shows one line."""

    def __init__(self, error: Exception) -> None:
        super().__init__(EXIT_FAILED)
        self.error = error
        text = str(error).strip()
        self.message = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _pass_os_errors(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except OSError as exc:
        if exc.errno is None:  # e.g. Hydra's MissingConfigException, an IOError: no file
            raise _HydraFailure(exc) from None
        raise _HydraOSError(exc) from None
    except Exception as exc:  # noqa: BLE001 - reported as one line, not a traceback
        raise _HydraFailure(exc) from None
