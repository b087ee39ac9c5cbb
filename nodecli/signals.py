"""Turn Ctrl-C and SIGTERM into a clean stop at the next batch boundary.

The first signal only sets a flag, so the run record is never cut mid-write; the loop
checks it between batches and stops with status "interrupted". A second signal stops
at once (KeyboardInterrupt), for a run that seems stuck.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """A stop signal arrived; `exit_code` follows the shell convention 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class GracefulStop:
    """Context manager: install the handlers (main thread only) and restore them after."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

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
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
