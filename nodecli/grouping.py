"""Which config keys tell runs apart, how they are named and how runs are selected.

Pure functions over the DataFrame from nodecli.records; imports only nodecli.errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from nodecli.errors import ConfigError

# Config keys never used for grouping by default: the seed is what we average over.
NOT_GROUPING = ("seed", "resume")
# Short names: `sensealg` means the column `sensealg.name`, `solver` means `solver.method`.
SHORT_SUFFIXES = (".name", ".method")


def short_name(column: str) -> str:
    """`sensealg.name` → `sensealg`, `solver.method` → `solver`; other keys unchanged."""
    for suffix in SHORT_SUFFIXES:
        if column.endswith(suffix) and column.count(".") == 1:
            return column[: -len(suffix)]
    return column


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


def format_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_matches(value: Any, wanted: str) -> bool:
    text = format_value(value)
    if text == wanted:
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


def varying_keys(df: pd.DataFrame) -> list[str]:
    runs = df.drop_duplicates("run_dir")
    keys = []
    for column in df.attrs.get("config_columns", []):
        if column in NOT_GROUPING or column not in runs:
            continue
        if runs[column].map(format_value).nunique() > 1:
            keys.append(column)
    return keys


def group_label(values: dict[str, Any]) -> str:
    if not values:
        return "all runs"
    return " ".join(f"{short_name(k)}={format_value(v)}" for k, v in values.items())
