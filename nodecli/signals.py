"""Turn Ctrl-C and SIGTERM into a clean stop at the next batch boundary.

The first signal only sets a flag, so the run record is never cut mid-write; the loop
checks it between batches and stops with status "interrupted". A second signal stops
at once (KeyboardInterrupt), for a run that seems stuck.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """A stop signal arrived; `exit_code` follows the shell convention 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


# Signals whose Python handler, when one is installed, is deferred to a batch boundary:
# submitit's SIGUSR2 handler (the time-limit / preemption warning it asks SLURM for)
# requeues the job and calls sys.exit at once, which cut the run mid-batch and left
# its record saying "running".
DEFERRED_SIGNALS = (signal.SIGUSR2,)


class GracefulStop:
    """Context manager: install the handlers (main thread only) and restore them after.

    A deferred signal (DEFERRED_SIGNALS with a Python handler already installed) stops
    the run like SIGTERM; when the context exits, that handler is run after all."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self.deferred: set[int] = set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self) -> None:
        """Raise StopRequested if a stop signal has arrived."""
        if self.signum is not None:
            raise StopRequested(self.signum)

    def __enter__(self) -> GracefulStop:
        # Signal handlers can only be set from the main thread (launchers may use others).
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            for signum in DEFERRED_SIGNALS:
                if callable(signal.getsignal(signum)):
                    self.deferred.add(signum)
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self.signum in self.deferred:  # the record is closed: now the owner's turn
            signal.raise_signal(self.signum)


def child_pids(parent: int | None = None) -> list[int]:
    """The direct children of PARENT (default: this process), read from /proc; [] where
    there is no /proc (then nothing is forwarded)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # after the command name's ")": state, then the parent's pid
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:  # the process ended meanwhile
            continue
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(stat.parent.name))
    return found


class ForwardStop:
    """Context manager for `nodecli sweep` while its jobs run in child processes (joblib,
    submitit_local). SIGTERM sent to this process alone (`kill PID`, a batch system)
    killed it at once and left its jobs training, orphaned. Instead pass it on to the
    children, which stop at their next batch boundary as `train` does, and keep waiting
    for them. (Ctrl-C in a terminal reaches the whole process group already.)"""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: object = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        for pid in child_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def __enter__(self) -> ForwardStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
