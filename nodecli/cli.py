"""The `nodecli` command: dispatch to train / sweep / report / gradcheck, exit codes.

Each command composes and validates its command line before anything is written, so
bad input is one line on stderr and exit code 2. This module only dispatches and turns
the shared exceptions into that line; it is the top of the import graph.

Exit codes: 0 success, 1 the run failed, 2 bad command line, config or folder,
128 + signal when stopped (130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from nodecli.console import fit_streams
from nodecli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    PluginError,
    UsageError,
    os_error_line,
)
from nodecli.record.provenance import set_command_line

USAGE = """usage: nodecli COMMAND [overrides ...]

commands:
  train      train the Neural ODE MNIST classifier once      nodecli train sensealg=adjoint
  sweep      run every combination, then a summary           nodecli sweep -m seed=0,1
  report     compare run records (mean ± std over seeds)     nodecli report --format markdown
  gradcheck  every sensealg's gradient vs a float64 reference nodecli gradcheck solver.rtol=1e-6
  backends   which sensealg/solver each backend= supports    nodecli backends
  --help  this message; `nodecli train --help` lists every config group and key
  --version, -V  the versions of nodecli, torch and Python
"""


# The commands are imported when called: report pulls in pandas and matplotlib, train
# and gradcheck torch; `nodecli --help` or a typo in the command name needs none of them.
def train_command(args: list[str]) -> int:
    from nodecli.train.command import train_command as run

    return run(args)


def sweep_command(args: list[str]) -> int:
    from nodecli.sweep.command import sweep_command as run

    return run(args)


def report_command(args: list[str]) -> int:
    from nodecli.report.command import report_command as run

    return run(args)


def gradcheck_command(args: list[str]) -> int:
    from nodecli.gradcheck import gradcheck_command as run  # start-up time

    return run(args)


def backends_command(args: list[str]) -> int:
    from nodecli.backends.command import backends_command as run

    return run(args)


def version_text() -> str:
    """nodecli's, torch's and Python's versions, from the package metadata: importing
    torch to ask it would take seconds."""
    import platform

    import nodecli
    from nodecli.record.provenance import dist_version

    return (
        f"nodecli {nodecli.__version__} (torch {dist_version('torch')}, "
        f"Python {platform.python_version()})"
    )


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "sweep": sweep_command,
    "report": report_command,
    "gradcheck": gradcheck_command,
    "backends": backends_command,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    fit_streams()  # an ASCII terminal or PYTHONIOENCODING=ascii: `±` prints as `+/-`
    if not argv or argv[0] in ("-h", "--help", "help", "-V", "--version"):
        try:
            print(version_text() if argv and argv[0] in ("-V", "--version") else USAGE.rstrip())
            sys.stdout.flush()
        except BrokenPipeError:
            _closed_pipe()
        sys.exit(EXIT_OK if argv else EXIT_USAGE)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        _fail(f"unknown command '{command}'; valid commands: {', '.join(COMMANDS)}")
    set_command_line(["nodecli", *argv])
    try:
        code = COMMANDS[command](rest)
        sys.stdout.flush()
    except BrokenPipeError:  # `nodecli report | head`: the reader has read all it wants
        _closed_pipe()
    except (ConfigError, UsageError) as exc:
        _fail(str(exc))
    except PluginError as exc:  # Hydra or a plugin gave up after the work had started
        print(f"nodecli: error: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    except OSError as exc:  # a folder or file in the way, a read-only or full disk
        _fail(os_error_line(exc))
    except KeyboardInterrupt:
        print("nodecli: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


EXIT_SIGPIPE = 128 + 13  # what a shell reports for a tool ended by SIGPIPE (git log | head)


def _closed_pipe() -> NoReturn:
    """Stop quietly: no message, no traceback, and no second error when Python flushes
    stdout at exit (it is pointed at /dev/null)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_SIGPIPE)


def _fail(message: str) -> NoReturn:
    print(f"nodecli: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
