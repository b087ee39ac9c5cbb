"""Hydra plumbing every command shares: conf/ location, compose + validate, running a
task under Hydra's own main, override quoting, the environment checks and Hydra's
argument parser.

It sits just above config.py: commands (train, sweep, gradcheck) import it, it imports
no command, so the plumbing cannot pull a command in (issue 9's import cycle).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import os
import re
import secrets
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

from nodecli.config import (
    Config,
    all_keys,
    explain_compose_error,
    group_options,
    register_schema,
    unknown_keys,
    validate,
)
from nodecli.errors import EXIT_FAILED, EXIT_USAGE, ConfigError, PluginError, raise_usage_errors
from nodecli.trackers import check_trackers


def conf_dir() -> Path:
    """conf/ ships inside the wheel as nodecli/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"nodecli's conf/ tree is missing (looked in {here} and {here.parent})")


def register_resolvers() -> None:
    """A short random suffix keeps two runs started in the same second apart. use_cache
    makes Hydra resolve it once per run, so every reference names the same directory.
    nodecli_job_dir names a sweep's job folders (conf/config.yaml's hydra.sweep.subdir)."""
    if not OmegaConf.has_resolver("nodecli_uid"):
        OmegaConf.register_new_resolver("nodecli_uid", lambda: secrets.token_hex(3), use_cache=True)
    if not OmegaConf.has_resolver("nodecli_job_dir"):
        OmegaConf.register_new_resolver("nodecli_job_dir", job_dir_name)


MAX_NAME_BYTES = 255  # the longest file name (one path component) Linux and macOS allow


def job_dir_name(num: int, overrides: str) -> str:
    """`<num>_<overrides>`, a sweep job's folder name: Hydra's own when it is one valid
    file name. A `/` (a path in a value) would make nested folders, so it becomes `_`;
    a name over 255 bytes ("File name too long") is cut and ends in a hash of the whole
    overrides. Deterministic, so a resume finds the same folder; unique by its number."""
    name = f"{num}_{overrides}".replace("/", "_")
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = "-" + hashlib.sha256(overrides.encode()).hexdigest()[:12]
    head = name.encode()[: MAX_NAME_BYTES - len(digest)].decode("utf-8", errors="ignore")
    return head + digest


def hydra_arg_parser() -> argparse.ArgumentParser:
    """Hydra's own argument parser, raising instead of exiting on a bad flag."""
    from hydra._internal.utils import get_args_parser

    return raise_usage_errors(get_args_parser(), "nodecli train --help lists the options")


def parse_overrides(overrides: list[str]) -> list[Override]:
    """OVERRIDES parsed by Hydra's grammar; a grammar error is one ConfigError line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's grammar errors: bad input
        message = unquoted_value_hint(exc, overrides) or explain_compose_error(exc, conf_dir())
        raise ConfigError(message) from exc


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


def compose_config(overrides: list[str]) -> Config:
    """Compose conf/ with OVERRIDES and validate it; raise ConfigError with one line."""
    parsed = list(zip(overrides, parse_overrides(overrides), strict=True))  # parsed once
    refuse_group_lists(parsed)
    refuse_deletions(parsed)
    refuse_chdir(parsed)
    refuse_mode(parsed)
    try:
        with composing() as compose:
            cfg = compose(overrides=overrides)
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
        raise ConfigError(
            unselected_tracker_key(overrides)
            or unquoted_value_hint(exc, overrides)
            or explain_compose_error(exc, conf_dir())
        ) from exc
    assert isinstance(config, Config)
    validate(config)
    check_trackers(config.logger)
    return config


def resolve_hydra_dir(key: str, overrides: list[str]) -> str:
    """KEY (hydra.run.dir or hydra.sweep.dir) as Hydra would resolve it under OVERRIDES
    (`runs/seed_${seed}`, `${now:%Y-%m-%d}`, `${oc.env:HOME}`). The caller claims and
    checks this folder and hands it to Hydra as given, so both mean the same one: a
    folder checked under its unresolved name let a second run write over a record."""
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


# The one config group whose option may be a list: several trackers at once.
LIST_GROUPS = ("logger",)


def refuse_group_lists(parsed: list[tuple[str, Override]]) -> None:
    """`solver=[rk4,tsit5]`: Hydra merges every listed option into one config (the last
    wins, silently); only the logger group means a list. Refuse it with the options."""
    groups = group_options(conf_dir())
    for text, override in parsed:
        group = override.key_or_group
        if group in groups and group not in LIST_GROUPS and isinstance(override.value(), list):
            raise ConfigError(
                f"{text} is a list, but {group} takes one option; valid {group} options: "
                f"{', '.join(groups[group])} (to run several, sweep them: "
                f"nodecli sweep {group}=a,b)"
            )


def refuse_deletions(parsed: list[tuple[str, Override]]) -> None:
    """`~sensealg`, `~train.epochs`: every key of the schema is required, so a deleted
    entry silently fell back to a schema default (or to no method at all, which failed
    mid-run). Refuse it; Hydra's own `~hydra.*` keys stay Hydra's business."""
    for text, override in parsed:
        key = override.key_or_group
        if override.is_delete() and key.split(".")[0] != "hydra":
            raise ConfigError(
                f"{text} deletes a config entry, but every key is required; set a value "
                f"instead ({key}=…; nodecli train --help lists every key and option)"
            )


def refuse_chdir(parsed: list[tuple[str, Override]]) -> None:
    """`hydra.job.chdir=true` makes the run folder the working directory, so relative
    paths (the default MLflow store sqlite:///outputs/mlflow.db, dataset.root) landed
    inside each run's record. nodecli never needs it: refuse it."""
    for text, override in parsed:
        if override.key_or_group == "hydra.job.chdir" and str(override.value()).lower() != "false":
            raise ConfigError(
                f"{text} is not supported: relative paths (logger.mlflow.tracking_uri, "
                "dataset.root) would then resolve inside each run folder; leave "
                "hydra.job.chdir out (false)"
            )


def refuse_mode(parsed: list[tuple[str, Override]]) -> None:
    """`hydra.mode=` is the command's to decide (train: one run, sweep: a multirun); set
    by hand it made `train` start a multirun, or `sweep` print Hydra's warnings."""
    for text, override in parsed:
        if override.key_or_group == "hydra.mode":
            raise ConfigError(
                f"{text} is not supported: `nodecli train` runs one job and `nodecli sweep` "
                "runs every job of a sweep; leave hydra.mode out"
            )


def unselected_tracker_key(overrides: list[str]) -> str | None:
    """A `logger.<tracker>.key=` override without that tracker chosen (OmegaConf only
    says "Unexpected type for root: NoneType"): name the logger= choice it needs."""
    chosen = " ".join(o for o in overrides if o.lstrip("+").startswith("logger="))
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "logger" and parts[1] not in chosen:
            tracker = parts[1]
            return (
                f"{key} applies only when logger={tracker} is chosen (or a list with it, "
                f"logger=[tensorboard,mlflow]); add logger={tracker}"
            )
    return None


def check_environment(config: Config) -> None:
    """Checks that need the machine or the disk: the device and the dataset files."""
    # Imported here: data/device pull in torch, which `--help` and bad input never need.
    from nodecli.data import DatasetError, dataset_size, ensure_mnist
    from nodecli.device import check_compiled_on, resolve_device

    resolve_device(config.device.name)
    check_compiled_on(config.device.name, config.layer_style.name)
    check_backend_installed(config.backend.name)
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
    if config.dataset.name.startswith("mnist_bundled") and not 1 <= n_train < n:
        raise ConfigError(
            f"data.n={n} with data.split={config.data.split} leaves an empty train or test "
            "set; raise data.n or move data.split away from 0 and 1"
        )


def check_backend_installed(backend: str) -> None:
    """A peer backend's library must be importable: one line naming the extra if not."""
    from nodecli.backends import PEERS_EXTRA, distribution

    module = distribution(backend)
    if module is not None:
        require_package(f"backend={backend}", module, f"pip install 'nodecli[{PEERS_EXTRA}]'")


def require_package(what: str, module: str, install: str) -> None:
    """WHAT (a backend, a launcher, a sweeper) needs MODULE: one line saying how to
    INSTALL it if it is missing. find_spec looks without importing (the library is
    imported only once the work starts)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{what} needs the {module} package, which is not installed; install it with: {install}"
        )


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


def quote_override_value(value: str, quote: str = "'") -> str:
    """VALUE (a path) as a Hydra override value, in QUOTE when it holds characters
    Hydra's grammar would parse or refuse (a space, `~`, `,`, `=`, quotes, non-ASCII …).
    Inside quotes Hydra keeps backslashes literally and only needs `\\'` for a quote."""
    if re.fullmatch(r"[\w./:+-]+", value, flags=re.ASCII):
        return value
    return quote + value.replace(quote, "\\" + quote) + quote


def shell_override(key: str, value: str) -> str:
    """`KEY=VALUE` for a hint the user can paste: VALUE quoted for Hydra (double quotes)
    where it needs it, then the whole quoted for the shell: 'resume="my runs/x"'."""
    value = quote_override_value(value, quote='"')
    return shlex.quote(f"{key}={value}")


# Keys whose value is a path: a `,` or `=` in one (a sweep job's folder) is syntax to Hydra.
PATH_KEYS = (
    "resume",
    "sweep.resume",
    "hydra.run.dir",
    "hydra.sweep.dir",
    "dataset.root",
    "logger.tensorboard.log_dir",
)


def unquoted_value_hint(exc: Exception, overrides: list[str]) -> str | None:
    """Hydra's error for a value its grammar cannot read unquoted (non-ASCII, `~`, `#`
    anywhere; `,`, `=`, brackets in a path) as one line saying how to quote it."""
    match = re.search(r"LexerNoViableAltException: (.*)\n( *)\^", str(exc))
    if not match:
        return _unquoted_path_hint(overrides)
    override, at = match.group(1), len(match.group(2)) - len("LexerNoViableAltException: ")
    key, sep, value = override.partition("=")
    char = override[at] if 0 <= at < len(override) else ""
    if not sep or at <= len(key):
        return f"malformed override '{override}': Hydra cannot read {char!r} there " + (
            "(expected key=value or group=option)"
        )
    if value.startswith("~"):
        return (
            f"{override}: Hydra neither reads nor expands '~'; write the path out, e.g. "
            f"{shell_override(key, os.path.expanduser(value))}"
        )
    return (
        f"{override}: Hydra cannot read {char!r} in an unquoted value; quote the value for "
        f"Hydra and the whole override for the shell, e.g. {shell_override(key, value)}"
    )


def _unquoted_path_hint(overrides: list[str]) -> str | None:
    """The quoting hint for the first path-valued override Hydra cannot parse; None if
    every one parses (the error is elsewhere)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or key.lstrip("+") not in PATH_KEYS:
            continue
        try:
            parser.parse_override(text)
        except Exception:  # noqa: BLE001 - Hydra's grammar errors: this one is unreadable
            return (
                f"{text}: Hydra reads characters of this path as override syntax; quote it "
                f"for Hydra and the whole override for the shell, e.g. "
                f"{shell_override(key, value)}"
            )
    return None


def override_value(text: str) -> str:
    """The value of one `key=value` override as Hydra reads it (quotes removed); the text
    after `=` when it is not a string (a number, null)."""
    value = parse_overrides([text])[0].value()
    return value if isinstance(value, str) else text.split("=", 1)[1]
