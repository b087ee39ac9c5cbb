"""Readers of a run record: the only code that reads record files (`read_run_json`,
`read_metrics`, `read_config`) and the one liveness rule `run_state`, used by resume,
sweep and report. Each reader refuses a damaged file with a ValueError saying why, so
every caller skips or refuses the same records."""

from __future__ import annotations

import csv
import functools
import json
import math
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nodecli.record.ownership import process_alive

if TYPE_CHECKING:
    import pandas as pd
from nodecli.record.layout import (
    CONFIG_FILE,
    METRICS_FILE,
    NUMERIC_METRICS,
    REQUIRED_METRICS,
    RUN_FILE,
    STALE_AFTER_S,
)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """RUN_DIR's run.json as a dict; ValueError (one line) when it is not a run record."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ValueError(f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict) or "status" not in data:
        raise ValueError("not a run record (no status)")
    wrong = _misshapen_field(data)
    if wrong:
        raise ValueError(wrong)
    return data


def _misshapen_field(info: dict[str, Any]) -> str | None:
    """The first run.json field whose type no writer produces (an edited or damaged
    record: refused before resume rewrites anything, such as .hydra/)."""

    def str_list(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    if not isinstance(info["status"], str):
        return f"status is {info['status']!r}, not a word"
    for key in ("overrides", "resumed_at"):
        if key in info and not str_list(info[key]):
            return f"{key} is not a list of strings"
    devices = info.get("devices")
    if devices is not None and not (
        isinstance(devices, list)
        and all(
            isinstance(d, dict)
            and isinstance(d.get("device"), str)
            and type(d.get("from_epoch")) is int
            for d in devices
        )
    ):
        return "devices is not a list of {device, from_epoch}"
    return None


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.csv (PATH, or a run folder) as a DataFrame; ValueError when it is missing,
    truncated or malformed."""
    import numpy as np
    import pandas as pd  # here: a training run never needs pandas, and it costs ~0.4 s

    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if path.is_dir():
        raise ValueError("a folder, not a file")
    if not path.is_file():
        raise ValueError("missing")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError("empty file (no header)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"malformed CSV ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in REQUIRED_METRICS if c not in frame.columns]
    if missing:
        raise ValueError(f"truncated or malformed: no column {missing[0]!r}")
    numeric = [c for c in frame.columns if c in REQUIRED_METRICS + NUMERIC_METRICS]
    numeric += [c for c in frame.columns if c.endswith("_memory_bytes")]
    numeric = list(dict.fromkeys(numeric))
    # Checked as one array (a loop of pandas calls per column cost ~10 ms a run: a
    # report reads hundreds). Only a column read as text needs converting.
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    values = frame[numeric].to_numpy(dtype=float)
    required = [numeric.index(c) for c in REQUIRED_METRICS]
    bad = np.isnan(values[:, required]).any(axis=1)
    if bad.any():
        row = int(bad.nonzero()[0][0]) + 2  # 1-based, after the header
        raise ValueError(f"truncated or malformed row (line {row})")
    # Values no run can write: an infinite or negative time, an accuracy outside 0–100
    # (a time of inf would break --plot, -1 give a negative speed-up).
    high = np.array([100.0 if c.endswith("_acc") else math.inf for c in numeric])
    wrong = np.isinf(values) | (values < 0.0) | (values > high)  # NaN: False throughout
    if wrong.any():
        col = int(wrong.any(axis=0).nonzero()[0][0])  # the first column, its first row
        row = int(wrong[:, col].nonzero()[0][0])
        column = numeric[col]
        value = frame[column].iloc[row]
        raise ValueError(f"{column}={value} on line {row + 2} is out of range")
    # The writer appends epochs 1, 2, … in order (a resume goes on from the last): a
    # duplicated, skipped or fractional epoch is an edited or damaged file, and counting
    # it would add a phantom run to every per-epoch mean.
    misplaced = (values[:, numeric.index("epoch")] != np.arange(1, len(frame) + 1)).nonzero()[0]
    if len(misplaced):
        row = int(misplaced[0])
        raise ValueError(
            f"epoch {frame['epoch'].iloc[row]:g} on line {row + 2} where epoch {row + 1} "
            "belongs: epochs must run 1, 2, … in order (a duplicated or edited row)"
        )
    frame["epoch"] = frame["epoch"].astype(int)
    return frame


def read_recorded_metrics(run_dir: Path, info: dict[str, Any]) -> pd.DataFrame:
    """RUN_DIR's metrics.csv checked against its run.json INFO as well: ValueError when it
    holds fewer rows than run.json's finished epochs (metrics.csv is written before
    run.json, so it never has fewer: truncated)."""
    metrics = read_metrics(Path(run_dir) / METRICS_FILE)
    recorded = info.get("epochs_completed")
    if isinstance(recorded, int) and recorded > len(metrics):
        raise ValueError(
            f"{len(metrics)} row(s) but run.json records {recorded} finished epoch(s): truncated"
        )
    return metrics


def read_metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows as the writer keeps them (text cells); [] when there is none.
    Parsed and checked by `read_metrics`, so a damaged file is a ValueError here too."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    read_metrics(path)
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run (.hydra/config.yaml), flattened to dotted keys."""
    return flatten(read_config_tree(run_dir))


def read_config_tree(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run (.hydra/config.yaml) as nested dicts; ValueError (one
    line) when it is missing, not YAML or not a mapping."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError("missing")
    container = _plain_yaml(path)
    try:
        if container is None:  # not plain data, or an error: OmegaConf's own answer
            container = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # noqa: BLE001 - YAML/OmegaConf errors: a corrupt file
        raise ValueError(f"invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(container, dict):
        raise ValueError("not a mapping")
    if not container:
        raise ValueError("empty")
    return container


def _plain_yaml(path: Path) -> dict[str, Any] | None:
    """PATH read by libyaml with OmegaConf.load's rules (its float forms, no timestamps,
    duplicate keys refused) when it holds plain data (string keys; dicts, lists, strings,
    numbers, booleans, nulls), for which OmegaConf.load + to_container give the same
    dict; None otherwise. OmegaConf's pure-Python parse took ~5 ms a record."""
    loader = _config_loader()
    if loader is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=loader)  # noqa: S506 - OmegaConf's safe loader
    except Exception:  # noqa: BLE001 - a damaged file: OmegaConf.load says why
        return None
    return data if isinstance(data, dict) and _is_plain(data) else None


def _is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float))  # bool is an int


@functools.cache
def _config_loader() -> type | None:
    """OmegaConf.load's own YAML loader (its float forms such as 1e-3, no timestamps,
    duplicate keys refused) on libyaml's C parser, as PyYAML builds its CSafeLoader: the
    same answer as OmegaConf's pure-Python parse, ~10x faster (a report reads every
    run's config). None where PyYAML has no libyaml or OmegaConf no such loader."""
    try:
        from omegaconf._utils import get_yaml_loader  # OmegaConf.load's loader class
        from yaml.constructor import SafeConstructor
        from yaml.cyaml import CParser
        from yaml.resolver import Resolver
    except ImportError:
        return None

    class Loader(CParser, get_yaml_loader()):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return Loader


def hydra_mode(run_dir: Path) -> str | None:
    """`RUN` or `MULTIRUN` (a sweep job), as Hydra recorded in .hydra/hydra.yaml; None
    when that file is missing or unreadable."""
    from omegaconf import OmegaConf

    try:
        mode = OmegaConf.load(Path(run_dir) / ".hydra" / "hydra.yaml").hydra.mode
    except Exception:  # noqa: BLE001 - missing or damaged: unknown
        return None
    return str(mode) if mode is not None else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (`sensealg.name`): report columns, tracker params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def run_state(info: dict[str, Any], stale_after_s: float = STALE_AFTER_S) -> tuple[str, float]:
    """(status, heartbeat age in seconds): the one liveness rule. A 'running' record is
    'stale' when its pid is gone on this host or its heartbeat is older than
    STALE_AFTER_S (the only evidence for a run on another host)."""
    status = str(info.get("status"))
    beat = _parse_time(info.get("heartbeat_at")) or _parse_time(info.get("started_at"))
    age = (datetime.now(timezone.utc) - beat).total_seconds() if beat else math.nan
    if status == "running":
        pid, host = info.get("pid"), info.get("host")
        dead = (
            host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid, host)
        )
        if dead or not age <= stale_after_s:
            return "stale", age
    return status, age
