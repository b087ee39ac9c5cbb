"""Experiment trackers (the `logger` config group): TensorBoard and MLflow.

The run record is the truth; trackers are copies for the tools users already have open.
So a tracker never stops or fails a run: its first error becomes one warning line on
stderr, that tracker is switched off for the rest of the run, and training goes on.
Both clients are optional dependencies (`pip install 'nodecli[trackers]'`) and are
imported only when a run asks for them, which keeps `nodecli train` start-up fast.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nodecli.errors import ConfigError

TRACKERS_EXTRA = "pip install 'nodecli[trackers]'"
TENSORBOARD_SUBDIR = "tensorboard"  # inside the run folder: `tensorboard --logdir outputs`


@dataclass
class TensorBoardConfig:
    """`logger=tensorboard`: event files in <run folder>/tensorboard unless log_dir is set."""

    log_dir: str | None = None


@dataclass
class MLflowConfig:
    """`logger=mlflow`: a local SQLite store under outputs/ unless tracking_uri is set."""

    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    experiment: str = "nodecli"


@dataclass
class LoggerConfig:
    """Which trackers a run writes to; `logger=[tensorboard,mlflow]` selects both."""

    tensorboard: TensorBoardConfig | None = None
    mlflow: MLflowConfig | None = None

    def names(self) -> list[str]:
        return [name for name in ("tensorboard", "mlflow") if getattr(self, name) is not None]


# What each tracker needs installed (module to find → pip package to name).
REQUIREMENTS = {
    "tensorboard": {"tensorboard": "tensorboard"},
    "mlflow": {"mlflow": "mlflow-skinny", "sqlalchemy": "sqlalchemy", "alembic": "alembic"},
}


def check_trackers(cfg: LoggerConfig) -> None:
    """Before any work: each chosen tracker's client is installed (one line if not), and
    MLflow's keys are not empty (an empty tracking_uri silently meant MLflow's own default
    store in the working directory, an empty experiment a warning after the run began)."""
    if cfg.mlflow is not None:
        for key in ("tracking_uri", "experiment"):
            if not str(getattr(cfg.mlflow, key)).strip():
                raise ConfigError(
                    f"logger.mlflow.{key} is empty; give one (default: "
                    f"{getattr(MLflowConfig, key)})"
                )
    for name in cfg.names():
        missing = [pkg for mod, pkg in REQUIREMENTS[name].items() if not _installed(mod)]
        if missing:
            raise ConfigError(
                f"logger={name} needs {', '.join(missing)}, which is not installed; "
                f"install it with {TRACKERS_EXTRA}"
            )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Tracker(Protocol):
    name: str

    def log_epoch(self, row: Mapping[str, Any]) -> None: ...

    def finish(self, status: str, final: Mapping[str, Any]) -> None: ...


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric values of ROW (NaN memory on MPS, say, is left out)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, cfg: TensorBoardConfig, run_dir: Path, params: Mapping[str, Any]) -> None:
        # Deferred import: torch.utils.tensorboard pulls in tensorboard (~1 s).
        from torch.utils.tensorboard import SummaryWriter

        log_dir = (
            Path(cfg.log_dir) / run_subdir(run_dir) if cfg.log_dir else run_dir / TENSORBOARD_SUBDIR
        )
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.params = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()
        }
        self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in params.items()))

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        step = int(row["epoch"])
        for key, value in _numbers(row).items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.writer.flush()

    def finish(self, status: str, final: Mapping[str, Any]) -> None:
        metrics = {f"final/{k}": v for k, v in _numbers(final).items()}
        self.writer.add_hparams(self.params, metrics, run_name=".")
        self.writer.close()


class MLflowTracker:
    name = "mlflow"

    def __init__(self, cfg: MLflowConfig, run_dir: Path, params: Mapping[str, Any]) -> None:
        # Fail fast instead of mlflow's minutes of retries against an unreachable server.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # Deferred import: mlflow takes ~1 s to import and most runs do not use it.
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        # mlflow and alembic log INFO lines ("Creating initial MLflow database tables")
        # when a store is first created; the run's own output says what matters.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)

        uri = cfg.tracking_uri
        if is_file_store(uri):  # asked for by name: MLflow 3 refuses it unless allowed
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        db = sqlite_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            if db.is_dir():  # MLflow would retry for ~10 s, logging a warning per attempt
                raise IsADirectoryError(errno.EISDIR, "is a folder, not a database file", str(db))
        with store_lock(db):
            self.client = MlflowClient(tracking_uri=uri)
            experiment_id = self._experiment_id(cfg.experiment)
        run = self.client.create_run(
            experiment_id, run_name=run_dir.name, tags={"nodecli.run_dir": str(run_dir)}
        )
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # the store's batch limit
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def _experiment_id(self, name: str) -> str:
        """NAME's experiment id, creating the experiment if needed. Parallel sweep jobs may
        create it at once: the loser of that race finds the winner's experiment."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(row["epoch"])
        stamp = _now_ms()
        metrics = [Metric(k, v, stamp, step) for k, v in _numbers(row).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, final: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        metrics = [Metric(f"final_{k}", v, stamp, 0) for k, v in _numbers(final).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        state = {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=state)


def run_subdir(run_dir: Path) -> Path:
    """Where a run's events go under a shared logger.tensorboard.log_dir: its run folder's
    path (relative to the working directory when inside it). Every sweep job, and every
    train, wrote into log_dir itself, so TensorBoard merged them into one run whose
    series repeated each step; a resumed run still finds its own folder again."""
    path = run_dir.absolute()
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path.relative_to(path.anchor)


def is_file_store(uri: str) -> bool:
    """URI names MLflow's file store (`file:…` or a plain path), which MLflow 3 refuses
    unless MLFLOW_ALLOW_FILE_STORE is set; a user who names it wants it."""
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    return scheme == "file" or scheme == "" or (len(scheme) == 1 and scheme.isalpha())


def sqlite_path(uri: str) -> Path | None:
    """The local database file of a `sqlite:///…` URI (relative or absolute); else None."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


@contextlib.contextmanager
def store_lock(db: Path | None) -> Iterator[None]:
    """Hold an flock on `<db>.lock` while a SQLite store is created and its experiment
    found or made: parallel sweep jobs (joblib, submitit) creating one fresh store at
    once otherwise race in MLflow's schema migration ("table … already exists") and all
    but one lose their run. Not a SQLite store: nothing to hold."""
    if db is None:
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Trackers:
    """The run's trackers behind one guard: an error switches that tracker off, one line."""

    def __init__(self, cfg: LoggerConfig, run_dir: Path, params: Mapping[str, Any]) -> None:
        self.active: list[Tracker] = []
        self.last: Mapping[str, Any] = {}  # the last epoch's row: the run's final figures
        makers = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}
        for name in cfg.names():
            try:
                self.active.append(makers[name](getattr(cfg, name), run_dir, params))
            except Exception as exc:  # noqa: BLE001 - a tracker must never stop the run
                _warn(name, exc)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self.last = row
        self._each("log_epoch", row)

    def finish(self, status: str) -> None:
        """Close every tracker with the run's status and its last epoch as final figures."""
        self._each("finish", status, self.last)
        self.active = []

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.active):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker must never stop the run
                self.active.remove(tracker)
                _warn(tracker.name, exc)


WARNING_CHARS = 200  # a tracker's error in the warning line: enough to say what failed


def shorten(text: str, limit: int = WARNING_CHARS) -> str:
    """TEXT's first line, at most LIMIT characters: cut at a word boundary and before any
    bracket or quote the kept part would leave open, then marked with an ellipsis."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    if len(text) <= limit:
        return text
    kept = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    pairs = {")": "(", "]": "[", "}": "{"}
    opened: list[int] = []  # positions of brackets / double quotes not closed yet
    for i, char in enumerate(kept):
        if char in "([{" or (char == '"' and not (opened and kept[opened[-1]] == '"')):
            opened.append(i)
        elif opened and (pairs.get(char) == kept[opened[-1]] or char == kept[opened[-1]] == '"'):
            opened.pop()
    if opened:
        kept = kept[: opened[0]]
    return kept.rstrip(" ,;:([{\"'") + " …"


def _warn(name: str, exc: BaseException) -> None:
    text = shorten(str(exc)) or type(exc).__name__
    print(
        f"nodecli: warning: logger={name} failed ({text}); it is off for this run, "
        "the run record is unaffected",
        file=sys.stderr,
        flush=True,
    )
