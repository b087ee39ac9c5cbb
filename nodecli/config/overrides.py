"""Override grammar nodecli adds to Hydra's: refusals of overrides nodecli cannot honour,
quoting for the shell, and hints for values Hydra misreads."""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

from nodecli.config.messages import explain_compose_error, group_options
from nodecli.config.tree import conf_dir
from nodecli.errors import ConfigError


def parse_overrides(overrides: list[str]) -> list[Override]:
    """OVERRIDES parsed by Hydra's grammar; a grammar error is one ConfigError line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # Hydra's grammar errors: bad input
        message = unquoted_value_hint(exc, overrides) or explain_compose_error(exc, conf_dir())
        raise ConfigError(message) from exc


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


def expand_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job of a sweep (`seed=0,1 train.lr=1e-3,1e-2`: 4 jobs), in Hydra's order (job
    i is hydra.job.num == i), as Hydra's basic sweeper splits them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if not overrides:
        return [[]]
    parsed = parse_overrides(overrides)
    try:
        (batch,) = BasicSweeper.split_arguments(parsed, None)
    except Exception as exc:
        raise ConfigError(f"cannot expand the sweep: {str(exc).splitlines()[0]}") from exc
    if not batch:
        raise ConfigError(
            f"the sweep {' '.join(overrides)} has no jobs (an empty list or range); "
            "give every swept key at least one value"
        )
    return batch
