"""The names and layout of record files: which folder is a run, which is an old attempt,
and what a folder holds besides nodecli's lock."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from nodecli.errors import ConfigError
from nodecli.record.ownership import CLAIM_FILE

if TYPE_CHECKING:
    pass


METRICS_FILE = "metrics.csv"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = ".hydra/config.yaml"  # written by Hydra
# Sweep resume moves a job's earlier record into <job dir>/attempts/<n>/.
ATTEMPTS_DIR = "attempts"
SWEEP_FILE = "sweep.json"  # a sweep folder's plan (nodecli.sweep.plan)
MULTIRUN_FILE = "multirun.yaml"  # written by Hydra at the start of every multirun

METRIC_COLUMNS = (
    "epoch",
    "train_time_s",
    "train_loss",
    "train_acc",
    "test_acc",
    "nfe_forward",
    "nfe_backward",
    "hold_memory_bytes",
    "peak_memory_bytes",
    "compile_time_s",
)

STATUSES = ("running", "completed", "failed", "interrupted")
# A running record refreshes heartbeat_at at least this often (and after every epoch);
# the report treats a "running" record whose heartbeat is much older as dead.
HEARTBEAT_INTERVAL_S = 30.0
# A "running" record whose heartbeat is older than this counts as dead ("stale").
STALE_AFTER_S = 600.0
REQUIRED_METRICS = ("epoch", "train_time_s", "train_acc", "test_acc")
NUMERIC_METRICS = ("train_loss", "nfe_forward", "nfe_backward")


def is_old_attempt(run_dir: Path) -> bool:
    """<job>/attempts/<n>/: an earlier attempt that sweep resume moved aside."""
    return run_dir.parent.name == ATTEMPTS_DIR and run_dir.name.isdigit()


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory under PATHS (a run dir holds run.json or metrics.csv).
    Old attempts kept by `nodecli sweep` resume (<job>/attempts/<n>/) are left out."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    # Keyed by the resolved folder: `report sw /abs/sw` or a symlink to sw read each
    # run twice (n doubled, the std shrunk); the path shown is the first one given.
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{raw}: no such file or directory")
        if path.is_file():
            if path.name not in (RUN_FILE, METRICS_FILE):
                raise ConfigError(
                    f"{raw} is a file, not a run or sweep folder (or a run's {RUN_FILE} / "
                    f"{METRICS_FILE}); give the folder that holds the records"
                )
            path = path.parent
        for name in (RUN_FILE, METRICS_FILE):
            for file in [path / name, *path.rglob(name)]:
                if file.is_file() and not is_old_attempt(file.parent):
                    found.setdefault(file.parent.resolve(), file.parent)
    return sorted(found.values())


def folder_entries(folder: Path) -> list[str]:
    """What FOLDER holds besides nodecli's lock file: a new run or sweep starts only in
    an empty folder, so it never buries a user's files or half a record."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != CLAIM_FILE)
