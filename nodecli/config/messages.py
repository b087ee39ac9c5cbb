"""Hydra's compose errors reworded as one line that says what is wrong and what is valid."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from nodecli.config.schema import SOLVERS, all_keys
from nodecli.ode.methods import METHODS, SENSEALGS


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    """The options of each config group: solver and sensealg from their registries (their
    YAML files must match, tests/test_config.py), the others from the conf/ tree."""
    options = {
        group.name: sorted(p.stem for p in group.glob("*.yaml"))
        for group in sorted(conf_dir.iterdir())
        if group.is_dir() and not group.name.startswith("_")
    }
    options["solver"] = sorted(SOLVERS)
    options["sensealg"] = sorted(SENSEALGS)
    return options


def _not_applicable(text: str) -> str | None:
    """'sensealg.K does not apply to sensealg=M; M accepts: ...' for a key of another
    gradient method (Hydra names the option's schema class, e.g. object_type=Direct)."""
    match = re.search(r"Key '(\w+)' not in '(\w+)'\s+full_key: sensealg\.\S+", text)
    if not match:
        return None
    key, class_name = match.groups()
    if not any(key in cls.option_keys() for cls in METHODS.values()):
        return None  # no method knows it: a typo, answered with 'did you mean'
    for name, cls in METHODS.items():
        if cls.__name__ == class_name:
            accepted = ", ".join(f"sensealg.{k}" for k in cls.option_keys())
            return f"sensealg.{key} does not apply to sensealg={name}; {name} accepts: {accepted}"
    return None


def _added_twice(text: str, groups: dict[str, list[str]]) -> str | None:
    """`+train.epochs=3`, `+sensealg=adjoint`: `+` adds what the config already has;
    Hydra's wording ("Could not append to config", "Multiple values for") names no fix."""
    key = re.search(r"An item is already at '([^']+)'", text)
    if key:
        name = key.group(1)
        return f"+{name}=… adds a key the config already has; set it without the +: {name}=VALUE"
    group = re.search(r"Multiple values for (\S+?)\.", text) or re.search(
        r"force-add of config groups is not supported: '\+\+([^=']+)=", text
    )
    if group and group.group(1) in groups:
        name = group.group(1)
        return (
            f"+{name}=… adds the group {name}, which the config already has; choose its "
            f"option without the +: {name}=OPTION with OPTION one of {', '.join(groups[name])}"
        )
    return None


def explain_compose_error(exc: Exception, conf_dir: Path) -> str:
    """Turn a Hydra/OmegaConf compose error into one line naming what is valid."""
    # Hydra wraps the informative OmegaConf error; read the whole chain.
    parts, cause = [], exc
    while cause is not None:
        parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(parts)
    groups = group_options(conf_dir)
    no_value = re.search(r"Error parsing override '([^'=]+)'\s+missing EQUAL", text)
    if no_value:
        key = no_value.group(1)
        if key in groups:
            return f"'{key}' needs an option: {key}=OPTION with OPTION one of " + ", ".join(
                groups[key]
            )
        return f"override '{key}' has no value; write it as {key}=VALUE"
    added = _added_twice(text, groups)
    if added:
        return added
    missing = re.search(r"Could not (?:find|load) '([\w/]+)/([^']*)'", text)
    if missing and missing.group(1) in groups:
        group, option = missing.groups()
        return f"{group}={option} is not an option; valid {group} options: " + ", ".join(
            groups[group]
        )
    not_applicable = _not_applicable(text)
    if not_applicable:
        return not_applicable
    unknown = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '[^']+' is not in struct\s+full_key: (\S+)", text
    )
    if unknown:
        key = unknown.group(1)
        if key.split(".")[0] in groups and "." not in key:
            return f"'{key}' is a config group; choose one of: " + ", ".join(groups[key])
        if key.startswith("hydra."):  # the chosen launcher's / sweeper's own settings
            return (
                f"unknown config key '{key}' for the chosen Hydra plugins (`nodecli train "
                "--cfg hydra` with the same hydra/… choices lists their keys)"
            )
        close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown config key '{key}'{hint} (nodecli train --help lists every key)"
    convert = re.search(
        r"Value '([^']*)'(?: of type '\w+')? could not be converted to (\w+)\s+full_key: (\S+)",
        text,
    )
    if convert:
        value, kind, key = convert.groups()
        return f"{key}={value} is not a valid {kind.lower()}"
    section = re.search(
        r"Invalid type assigned: .*? is not a subclass of \w+.*?full_key: (\S+)", text, re.S
    )
    if section:
        key = section.group(1)
        subkeys = [k[len(key) + 1 :] for k in all_keys() if k.startswith(f"{key}.")]
        return f"'{key}' is a section, not a value; set one of its keys: " + ", ".join(
            f"{key}.{k}" for k in subkeys
        )
    bad_bool = re.search(r"Value '([^']*)' is not a valid bool.*?full_key: (\S+)", text, re.S)
    if bad_bool:
        value, key = bad_bool.groups()
        return f"{key}={value} is not a valid boolean; use true or false"
    if "mismatched input" in text or "no viable alternative" in text or "extraneous" in text:
        return f"malformed override: {text.splitlines()[0]} (expected key=value or group=option)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), repr(exc))
    return first


def missing_plugin(text: str, hpo_extra: str) -> str | None:
    """Hydra's "Could not find 'hydra/launcher/X'" (or sweeper) as one line naming the
    launchers or sweepers there are, and the extra that installs them."""
    import re

    launcher = re.search(r"Could not find 'hydra/launcher/([^']*)'", text)
    if launcher:
        return (
            f"hydra/launcher={launcher.group(1)} is not an installed launcher; Hydra's "
            "launchers: basic, joblib, submitit_local, submitit_slurm (the last three: "
            "pip install 'nodecli[launchers]')"
        )
    sweeper = re.search(r"Could not find 'hydra/sweeper/([^']*)'", text)
    if sweeper:
        return (
            f"hydra/sweeper={sweeper.group(1)} is not an installed sweeper; sweepers: "
            f"nodecli (the default grid), basic (Hydra's grid), optuna (a search; {hpo_extra})"
        )
    return None
