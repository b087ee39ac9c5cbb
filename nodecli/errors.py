"""Exceptions every command shares, exit codes, and the argparse error hook.

The bottom of nodecli's import graph: it imports nothing from nodecli, so any module may
raise these and `nodecli.cli` turns them into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ConfigError(ValueError):
    """A bad command line or config value; the message is one user-facing line."""


class UsageError(Exception):
    """A bad command line; the message is one line."""


class PluginError(Exception):
    """Hydra or a plugin (a launcher, the Optuna sweeper) gave up after work had started:
    one line and exit code 1, not a traceback. ORIGINAL is what it raised."""

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


def raise_usage_errors(parser: argparse.ArgumentParser, hint: str) -> argparse.ArgumentParser:
    """Make PARSER raise UsageError (message + HINT) instead of printing usage and exiting 2,
    so every command reports bad flags the same way, through cli.main."""

    def error(message: str) -> NoReturn:
        raise UsageError(f"{message} ({hint})")

    parser.error = error  # type: ignore[method-assign]
    return parser


_OS_HINTS = {
    "No space left on device": "free some space",
    "Read-only file system": "choose a writable folder",
    "Not a directory": "a file is in the way; move it or choose another folder",
    "File exists": "a file is in the way; move it or choose another folder",
    "Permission denied": "check the folder's permissions",
    "Is a directory": "a folder is in the way; choose another path",
}


def os_error_line(exc: OSError) -> str:
    """A file-system error as one line: what failed, on which path, what to do."""
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write {path}: {reason}; {_OS_HINTS.get(reason, 'check the path')}"
