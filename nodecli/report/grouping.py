"""Which config keys tell runs apart, how groups are named, and how runs are selected.

A sweep varies a few keys on purpose; other keys then differ only because they follow from
those (a per-method default such as `sensealg.checkpointing`, `solver.step_size=null` for
adaptive solvers, a key that exists for some methods only). Grouping by them would split
nothing and only lengthen every label, so `grouping_keys` keeps the keys that vary and are
not a function of another kept key, unless the user set them on the command line.

Pure functions over the DataFrame from nodecli.report.load; imports only nodecli.errors.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError

# Config keys never used for grouping by default: the seed is what we average over.
NOT_GROUPING = ("seed", "resume")
# Short names: `sensealg` means the column `sensealg.name`, `solver` means `solver.method`.
SHORT_SUFFIXES = (".name", ".method")
LABEL_SEPARATOR = " · "
MISSING = "(unset)"


def short_name(column: str) -> str:
    """`sensealg.name` → `sensealg`, `solver.method` → `solver`; other keys unchanged."""
    for suffix in SHORT_SUFFIXES:
        if column.endswith(suffix) and column.count(".") == 1:
            return column[: -len(suffix)]
    return column


def is_choice(column: str) -> bool:
    """A config-group choice (`sensealg.name`): its values name themselves in a label."""
    return short_name(column) != column


def resolve_key(key: str, columns: Sequence[str], what: str) -> str:
    if key in columns:
        return key
    for column in columns:
        if short_name(column) == key:
            return column
    raise ConfigError(
        f"{what}: unknown key '{key}'; valid keys: "
        + ", ".join(sorted({short_name(c) for c in columns}))
    )


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_value(value: Any) -> str:
    if is_missing(value):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_matches(value: Any, wanted: str) -> bool:
    text = format_value(value)
    if text == wanted or value_label(value) == wanted:  # `unset`: a key the run lacks
        return True
    try:
        return float(text) == float(wanted)
    except ValueError:
        return False


def parse_pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} expects key=value, got '{part}'")
        pairs.append((key, value))
    if not pairs:
        raise ConfigError(f"{what} expects key=value")
    return pairs


def filter_runs(df: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """Keep runs whose config (or status/device) matches every KEY=VALUE; VALUE may be
    a|b to accept several."""
    columns = [*df.attrs.get("config_columns", []), "status", "device"]
    for clause in where:
        key, sep, value = clause.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where expects key=value, got '{clause}'")
        column = resolve_key(key, columns, "--where")
        accepted = value.replace(",", "|").split("|")
        mask = df[column].map(lambda v, a=accepted: any(_value_matches(v, w) for w in a))
        attrs = df.attrs
        df = df[mask]
        df.attrs = attrs
    return df


def _cell_key(value: Any) -> str:
    """A hashable, comparable form of a value; a key a run does not have is its own value."""
    return MISSING if is_missing(value) else format_value(value)


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Config keys (seed aside) with more than one value over the runs, absent counted as a
    value, in config order."""
    runs = df.drop_duplicates("run_dir")
    keys = []
    for column in df.attrs.get("config_columns", []):
        if column in NOT_GROUPING or column not in runs:
            continue
        if runs[column].map(_cell_key).nunique() > 1:
            keys.append(column)
    return keys


def user_set_keys(overrides: Iterable[Any], columns: Sequence[str]) -> set[str]:
    """Config columns named in the runs' command-line overrides (`sensealg=gauss` names
    `sensealg.name`, `solver.step_size=0.05` names itself)."""
    found: set[str] = set()
    for item in overrides:
        for override in item if isinstance(item, (list, tuple)) else []:
            key = str(override).partition("=")[0].lstrip("+~")
            for column in columns:
                if column == key or (is_choice(column) and short_name(column) == key):
                    found.add(column)
    return found


def determines(runs: pd.DataFrame, key: str, other: str) -> bool:
    """True when KEY's value fixes OTHER's value in every run (a functional dependency)."""
    pairs = pd.DataFrame({"k": runs[key].map(_cell_key), "o": runs[other].map(_cell_key)})
    return bool((pairs.groupby("k")["o"].nunique() <= 1).all())


@dataclass
class Grouping:
    """The grouping keys, and the varying keys left out because another key decides them."""

    keys: list[str]
    determined: dict[str, str] = field(default_factory=dict)  # left-out key -> its decider


def grouping_keys(df: pd.DataFrame) -> Grouping:
    """The keys to group by when the user gives none: every varying key, except one that is
    a function of a key kept before it. Kept first: keys the user set on the command line,
    then config-group choices (`sensealg`, `solver`), then the rest in config order; a key
    the user set is never dropped."""
    runs = df.drop_duplicates("run_dir")
    varying = varying_keys(df)
    overrides = runs["overrides"] if "overrides" in runs else []
    user = user_set_keys(overrides, varying)
    order = sorted(varying, key=lambda c: (c not in user, not is_choice(c), varying.index(c)))
    kept: list[str] = []
    determined: dict[str, str] = {}
    for column in order:
        decider = next((k for k in kept if determines(runs, k, column)), None)
        if decider is not None and column not in user:
            determined[column] = decider
        else:
            kept.append(column)
    return Grouping([c for c in varying if c in kept], determined)


def value_label(value: Any) -> str:
    """One key's part of a group label: the value alone, since the header names the key.
    A key the run's config does not have at all reads `unset` (null is a value)."""
    return "unset" if is_missing(value) and value is not None else format_value(value)


def group_label(values: dict[str, Any]) -> str:
    """The short label of a group: its keys' values joined by ' · ' (`tsit5 · adjoint`)."""
    if not values:
        return "all runs"
    return LABEL_SEPARATOR.join(value_label(v) for v in values.values())


def group_labels(rows: Sequence[dict[str, Any]]) -> list[str]:
    """`group_label` of each row, made distinct where different values print the same
    (`dataset.root=null` and the string 'null'; a value holding ' · '): those labels quote
    their string values, and any still alike are numbered. Groups are formed by label, so
    two configurations must never share one."""
    labels = [group_label(values) for values in rows]
    identities: dict[str, set[tuple[str, ...]]] = {}
    for label, values in zip(labels, rows, strict=True):
        identities.setdefault(label, set()).add(_typed(values))
    clashing = {label for label, ids in identities.items() if len(ids) > 1}
    if not clashing:
        return labels
    quoted: dict[tuple[str, ...], str] = {}
    uses: Counter[str] = Counter()
    for i, values in enumerate(rows):
        if labels[i] in clashing:
            identity = _typed(values)
            if identity not in quoted:
                text = LABEL_SEPARATOR.join(
                    repr(v) if isinstance(v, str) else value_label(v) for v in values.values()
                )
                uses[text] += 1
                quoted[identity] = text if uses[text] == 1 else f"{text} #{uses[text]}"
            labels[i] = quoted[identity]
    return labels


def _typed(values: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        f"{'unset' if is_missing(v) and v is not None else type(v).__name__}:{format_value(v)}"
        for v in values.values()
    )


# Columns the report's tables always have: a key whose last part reads the same keeps its
# dotted name (`--by train.epochs` gave two columns headed `epochs`).
TABLE_COLUMNS = ("runs", "epochs")


def key_names(keys: Sequence[str]) -> list[str]:
    """Short, distinct names for KEYS: `sensealg`, `solver`, `lr` (train.lr); the dotted
    name where the last part alone would be ambiguous or read as a table column."""
    last = [short_name(k) if is_choice(k) else k.rsplit(".", 1)[-1] for k in keys]
    return [
        name if last.count(name) == 1 and name not in TABLE_COLUMNS else key
        for name, key in zip(last, keys, strict=True)
    ]


def keys_header(keys: Sequence[str]) -> str:
    """The key names once, for the header above the labels (`solver · sensealg`)."""
    return LABEL_SEPARATOR.join(key_names(keys)) or "group"
