"""Clean stops and output that cannot stop the work.

Ctrl-C, SIGTERM and SIGHUP (a closed terminal or SSH session) become a clean stop: the
first signal only sets a flag, so the run record is never cut mid-write; the loop checks
it between batches and stops with status "interrupted". Inside a batch (no record write
there) the stop is raised at once, so a long batch does not delay it. A second signal
stops at once (KeyboardInterrupt), for a run that seems stuck.

`OutputNeverStopsWork`: a closed stdout or stderr (`nodecli train | head`) must not fail
a run or a sweep; the stream is pointed at /dev/null and the work goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
        self._immediate = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self._immediate and signum not in self.deferred:
            self._immediate = False  # raised once; the handler of the stop writes the record
            raise StopRequested(signum)

    @contextlib.contextmanager
    def immediate(self) -> Iterator[None]:
        """Within this block (computation only, no record write) a stop signal raises
        StopRequested at once instead of waiting for the block's end: one batch of a
        stiff or long solve can take minutes. A deferred signal still waits."""
        self.check()
        self._immediate = True
        try:
            yield
        finally:
            self._immediate = False

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


#: What `nodecli sweep` passes on to its jobs' processes (Ctrl-C reaches the group).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ForwardStop:
    """Context manager for `nodecli sweep` while its jobs run in child processes (joblib,
    submitit_local). SIGTERM sent to this process alone (`kill PID`, a batch system)
    killed it at once and left its jobs training, orphaned. Instead pass it on to the
    children, which stop at their next batch boundary as `train` does, and keep waiting
    for them. (Ctrl-C in a terminal reaches the whole process group already.)"""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        for pid in child_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def __enter__(self) -> ForwardStop:
        if threading.current_thread() is threading.main_thread():
            for signum in FORWARDED_SIGNALS:
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


class _Unstoppable:
    """A text stream whose write or flush failing with EPIPE (its reader went away)
    points the stream's file descriptor at /dev/null and carries on: what was printed is
    nobody's any more, but the run it describes is still the user's."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self.closed_pipe = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    def _retry(self, action: str, *args: object) -> object:
        method = getattr(self._stream, action)
        try:
            return method(*args)
        except OSError as exc:  # BrokenPipeError, or EPIPE / EINVAL from a flush
            if not isinstance(exc, BrokenPipeError) and exc.errno not in (
                errno.EPIPE,
                errno.EINVAL,
            ):
                raise
            self._to_devnull()
            with contextlib.suppress(OSError, ValueError):
                return method(*args)  # the buffer drains into /dev/null now
            return None

    def _to_devnull(self) -> None:
        self.closed_pipe = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # type: ignore[attr-defined]
            os.close(devnull)

    def write(self, text: str) -> int:
        self._retry("write", text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        self._retry("writelines", lines)

    def flush(self) -> None:
        self._retry("flush")


@contextlib.contextmanager
def output_never_stops_work() -> Iterator[None]:
    """For commands that do work (train, sweep): while inside, a closed stdout or stderr
    is silently replaced by /dev/null, so `nodecli train | head -n 1` trains every epoch
    and finishes its record. Commands that only print (report) keep stopping quietly at
    a closed pipe instead (nodecli.cli). Idempotent: a job inside a sweep nests it."""
    if isinstance(sys.stdout, _Unstoppable) and isinstance(sys.stderr, _Unstoppable):
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout = _Unstoppable(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _Unstoppable(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved
