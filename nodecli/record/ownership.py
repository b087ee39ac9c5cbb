"""Who may write a folder: one exclusive claim per run folder, job folder and sweep folder.

A claim is `<folder>/.nodecli.lock`, locked with flock(2) for as long as the owning
process lives and holding that owner's pid, host, start time and a random token. The
kernel drops the lock when the owner dies (even by SIGKILL), so a stale claim never
blocks anyone; a live one makes a second writer stop with one line naming the owner.
Every record write calls `ensure_owned` first, so a writer that lost its folder (the
lock file removed or replaced) stops instead of writing into someone else's record.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nodecli.errors import ConfigError

CLAIM_FILE = ".nodecli.lock"


class ClaimError(ConfigError):
    """Another live process owns the folder (exit 2, one line naming the owner)."""


class ClaimLost(RuntimeError):
    """This process was about to write into a folder it does not (or no longer) own."""


@dataclass
class Claim:
    """A held claim: the open, flock-ed lock file and the token written into it."""

    folder: Path
    fd: int
    token: str

    @property
    def path(self) -> Path:
        return self.folder / CLAIM_FILE

    def check(self) -> None:
        """Raise ClaimLost unless the lock file on disk is still the one this claim holds."""
        try:
            same = os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
            mine = same and self.token in os.pread(self.fd, 4096, 0).decode("utf-8", "replace")
        except OSError:
            mine = False
        if not mine:
            raise ClaimLost(
                f"{self.folder} is no longer owned by this process ({CLAIM_FILE} was removed "
                "or replaced); stopped without writing"
            )

    def release(self) -> None:
        """Drop the claim (the lock file stays: unlinking it would race with waiters)."""
        _held.pop(self.folder, None)
        try:
            os.close(self.fd)
        except OSError:
            pass


_held: dict[Path, Claim] = {}


def describe_owner(folder: Path, attempts: int = 20) -> str:
    """'pid N on HOST since T' from FOLDER's lock file. The owner writes its details just
    after locking, so a racing reader may see them empty or still the previous owner's
    (a dead pid here): it looks again for up to a second before saying less."""
    for attempt in range(attempts):
        try:
            owner = json.loads((folder / CLAIM_FILE).read_text(encoding="utf-8"))
            pid, host = owner["pid"], owner["host"]
            if host != socket.gethostname() or process_alive(pid, host):
                return f"pid {pid} on {host} since {owner['started_at']}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if attempt + 1 < attempts:
            time.sleep(0.05)
    return "another process"


def process_alive(pid: object, host: object) -> bool:
    """True if PID is a live process on this host; a record from another host, or without
    a usable pid, cannot be checked from here and counts as not alive."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def live_owner(folder: Path) -> str | None:
    """Who holds FOLDER's claim right now ('pid N on HOST since T'), or None; only
    looks (a shared lock on a read-only descriptor), so the folder is left unchanged."""
    if held_claim(folder) is not None:  # this process: flock would conflict with itself
        return None
    try:
        fd = os.open(Path(folder) / CLAIM_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_owner(Path(folder))
    finally:
        os.close(fd)
    return None


def claim_folder(folder: Path, purpose: str) -> Claim:
    """Claim FOLDER (created if missing) for this process; idempotent within a process.

    Raises ClaimError when a live process holds it, OSError when the folder cannot be
    created or written (the caller turns that into one line).
    """
    folder = Path(folder).resolve()
    if folder in _held:
        return _held[folder]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClaimError(
                f"{folder} is in use by {describe_owner(folder)} ({purpose}); wait for it "
                "to finish or stop it, or choose another folder"
            ) from None
        try:  # the file we locked must still be the one at PATH (not replaced meanwhile)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    token = secrets.token_hex(8)
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "purpose": purpose,
        "token": token,
    }
    data = (json.dumps(owner) + "\n").encode("utf-8")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        os.close(fd)
        raise
    claim = Claim(folder, fd, token)
    _held[folder] = claim
    return claim


def held_claim(folder: Path) -> Claim | None:
    """This process's claim on FOLDER, if it holds one."""
    return _held.get(Path(folder).resolve())


def ensure_owned(folder: Path) -> None:
    """Called right before every record write: this process must hold FOLDER's claim."""
    claim = held_claim(folder)
    if claim is None:
        raise ClaimLost(f"{folder} is not claimed by this process; stopped without writing")
    claim.check()


def release_folder(folder: Path) -> None:
    claim = held_claim(folder)
    if claim is not None:
        claim.release()


def check_writable(folder: Path) -> None:
    """Create FOLDER and prove a file can be written in it, before any work starts
    (a file in the way, a read-only file system): raises OSError naming the path."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".nodecli-probe-")
    os.close(fd)
    os.unlink(probe)
