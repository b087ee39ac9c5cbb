"""Atomic file writes: readers see the old file or the new one, never half of it.

Every record file, checkpoint, sweep plan, cached dataset and figure is written through
here (temp file in the same folder, fsync, rename), so a kill or a full disk at any line
leaves the earlier file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["FILE_MODE", "atomic_write_bytes", "atomic_write_text"]


def _default_file_mode() -> int:
    """0666 minus the umask: what open(2) would give, so records are as readable as
    .hydra/ files (mkstemp alone makes them 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write DATA to PATH so that readers see either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        # ENOSPC from write() names no file, and a read-only folder names the temporary
        # one (.metrics.csv.x1y2.tmp): name the record file the user knows instead.
        if exc.filename is None or Path(exc.filename).name.startswith(f".{path.name}."):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
