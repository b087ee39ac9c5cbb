"""The `nodecli` command: train / sweep / report, argument handling and exit codes.

Hydra owns composition, output directories and launching. Before handing over, every
command line is composed once with Hydra's compose API and validated, so a bad
override becomes one line on stderr and exit code 2 before anything is written.

Exit codes: 0 success, 1 the run failed, 2 bad command line or config.
"""

from __future__ import annotations

import argparse
import difflib
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from nodecli.config import (
    Config,
    all_keys,
    explain_compose_error,
    register_schema,
    unknown_keys,
    validate,
)
from nodecli.errors import EXIT_OK, EXIT_USAGE, ConfigError, UsageError, raise_usage_errors
from nodecli.runs import RUN_FILE, process_alive, read_run_json

USAGE = """usage: nodecli COMMAND [overrides ...]

commands:
  train      train the Neural ODE MNIST classifier once      nodecli train sensealg=adjoint
  sweep      run every combination, then a summary           nodecli sweep -m seed=0,1
  report     compare run records (mean ± std over seeds)     nodecli report --format markdown
  gradcheck  every sensealg's gradient vs a float64 reference nodecli gradcheck solver.rtol=1e-6
  --help  this message; `nodecli train --help` lists every config group and key
"""


def conf_dir() -> Path:
    """conf/ ships inside the wheel as nodecli/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"nodecli's conf/ tree is missing (looked in {here} and {here.parent})")


def _register_resolvers() -> None:
    # A short random suffix keeps two runs started in the same second apart. use_cache
    # makes Hydra resolve it once per run, so every reference names the same directory.
    if not OmegaConf.has_resolver("nodecli_uid"):
        OmegaConf.register_new_resolver("nodecli_uid", lambda: secrets.token_hex(3), use_cache=True)


def hydra_arg_parser() -> argparse.ArgumentParser:
    """Hydra's own argument parser, raising instead of exiting on a bad flag."""
    from hydra._internal.utils import get_args_parser

    return raise_usage_errors(get_args_parser(), "nodecli train --help lists the options")


def compose_config(overrides: list[str]) -> Config:
    """Compose conf/ with OVERRIDES and validate it; raise ConfigError with one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    _register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
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
        raise ConfigError(explain_compose_error(exc, conf_dir())) from exc
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(config, Config)
    validate(config)
    return config


def check_environment(config: Config) -> None:
    """Checks that need the machine or the disk: the device and the dataset files."""
    from nodecli.data import DatasetError, dataset_size, ensure_mnist
    from nodecli.device import resolve_device

    resolve_device(config.device.name)
    try:
        if config.dataset.name == "mnist":
            ensure_mnist(config.dataset.root or "data/mnist", config.dataset.download)
        size = dataset_size(config.dataset.name, config.dataset.root)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from exc
    if config.data.n is not None and config.data.n > size:
        raise ConfigError(
            f"data.n={config.data.n} is larger than the {size} digits of "
            f"dataset={config.dataset.name}; use data.n <= {size} or data.n=null"
        )
    n = size if config.data.n is None else config.data.n
    n_train = round(n * config.data.split)
    if config.dataset.name == "mnist_bundled" and not 1 <= n_train < n:
        raise ConfigError(
            f"data.n={n} with data.split={config.data.split} leaves an empty train or test "
            "set; raise data.n or move data.split away from 0 and 1"
        )


def run_hydra(task: Callable[[DictConfig], int], args: list[str]) -> None:
    """Run TASK under Hydra's own main (output dirs, .hydra/ files, launchers, --help)."""
    import hydra

    register_schema()
    _register_resolvers()
    main = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)
    saved = sys.argv
    sys.argv = ["nodecli", *args]
    try:
        main()
    finally:
        sys.argv = saved


_exit_codes: list[int] = []


def _train_task(cfg: DictConfig) -> int:
    """What Hydra runs for each job: train into the job's output directory."""
    from hydra.core.hydra_config import HydraConfig

    from nodecli.train import run_experiment

    hydra_cfg = HydraConfig.get()
    config = OmegaConf.to_object(cfg)
    assert isinstance(config, Config)
    code = run_experiment(
        config, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    )
    _exit_codes.append(code)
    if code >= 128:  # stopped by a signal: stop the whole command, sweeps included
        raise SystemExit(code)
    return code


def quote_override_value(value: str) -> str:
    """VALUE (a path) as a Hydra override value, single-quoted when it holds characters
    Hydra's grammar would parse (a space, `~`, quotes …). Inside quotes Hydra keeps
    backslashes literally and only needs `\\'` for a quote."""
    if re.fullmatch(r"[\w./:+-]+", value):
        return value
    return "'" + value.replace("'", "\\'") + "'"


def resume_overrides(target: str, extra: list[str]) -> list[str]:
    """The overrides that continue the run in TARGET: its own, plus train.epochs if given.

    The run's directory, config and record are reused, so resume refuses anything that
    would silently change the experiment half-way.
    """
    run_dir = Path(target).expanduser().resolve()
    hint = "give a run folder such as outputs/runs/<date>/<time>-<id>"
    if not run_dir.is_dir():
        raise ConfigError(f"resume={target}: no such directory; {hint}")
    saved_path = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / RUN_FILE).is_file() or not saved_path.is_file():
        raise ConfigError(
            f"resume={target} is not a run directory (no run.json or .hydra/); {hint}"
        )
    try:
        info = read_run_json(run_dir)
        saved = [str(o) for o in OmegaConf.to_container(OmegaConf.load(saved_path))]
    except Exception as exc:  # unreadable JSON/YAML: say which file, not how it broke
        raise ConfigError(f"resume={target}: the run record is unreadable ({exc})") from exc
    if info.get("status") == "running" and process_alive(info.get("pid"), info.get("host")):
        raise ConfigError(f"resume={target}: that run is still running (pid {info['pid']})")
    keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    if keys - {"train.epochs"}:
        raise ConfigError(
            "resume continues a run with its own config; only train.epochs=N may be given "
            f"with it (got {', '.join(sorted(keys - {'train.epochs'}))})"
        )
    kept = [o for o in saved if not o.startswith("resume=") and o.split("=", 1)[0] not in keys]
    return [*kept, *extra, f"resume={quote_override_value(str(run_dir))}"]


def train_command(args: list[str]) -> int:
    parsed = hydra_arg_parser().parse_args(args)
    if parsed.multirun:
        raise UsageError("train runs one job; use `nodecli sweep` for multirun")
    informational = parsed.help or parsed.hydra_help or parsed.cfg or parsed.info
    resume = [o for o in parsed.overrides if o.startswith("resume=")]
    if resume and not informational:
        target = resume[-1].split("=", 1)[1]
        overrides = resume_overrides(target, [o for o in parsed.overrides if o not in resume])
        config = compose_config(overrides)
        if config.resume and config.train.epochs <= _finished_epochs(Path(config.resume)):
            raise ConfigError(
                f"resume={target}: all {config.train.epochs} epochs are finished; "
                "add train.epochs=N with a larger N to train further"
            )
        check_environment(config)
        args = [*overrides, f"hydra.run.dir={quote_override_value(config.resume or '')}"]
    elif not informational:
        config = compose_config(parsed.overrides)
        check_environment(config)
        _refuse_existing_run_dir(parsed.overrides)
    run_hydra(_train_task, args)
    return _exit_codes[-1] if _exit_codes else EXIT_OK


def _refuse_existing_run_dir(overrides: list[str]) -> None:
    """A new run never writes over another run's record (resume= continues one)."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") == "hydra.run.dir" and (Path(value) / RUN_FILE).is_file():
            raise ConfigError(
                f"hydra.run.dir={value} already holds a run record; choose another folder, "
                f"or continue that run with resume={value}"
            )


def _finished_epochs(run_dir: Path) -> int:
    return int(read_run_json(run_dir).get("epochs_completed", 0))


def sweep_command(args: list[str]) -> int:
    from nodecli.sweep import sweep_command as run

    return run(args)


def report_command(args: list[str]) -> int:
    from nodecli.report import report_command as run

    return run(args)


def gradcheck_command(args: list[str]) -> int:
    from nodecli.gradcheck import gradcheck_command as run

    return run(args)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "sweep": sweep_command,
    "report": report_command,
    "gradcheck": gradcheck_command,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        sys.exit(EXIT_OK if argv else EXIT_USAGE)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        _fail(f"unknown command '{command}'; valid commands: {', '.join(COMMANDS)}")
    try:
        code = COMMANDS[command](rest)
    except (ConfigError, UsageError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("nodecli: interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.exit(code)


def _fail(message: str) -> NoReturn:
    print(f"nodecli: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
