"""Rich consoles that stay readable when output goes to a file or a pipe.

Rich assumes 80 columns when stdout is not a terminal, which crushes wide tables into
one-character columns; a log file has no width limit, so tables get room there.
"""

from __future__ import annotations

from rich.console import Console as RichConsole

PIPE_WIDTH = 200


class Console(RichConsole):
    """Rich's console, but a closed pipe (`nodecli report | head`) raises BrokenPipeError
    for nodecli.cli to end quietly, as for any other write; rich would exit 1 itself."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def make_console(stderr: bool = False) -> Console:
    console = Console(highlight=False, soft_wrap=True, stderr=stderr)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, stderr=stderr, width=PIPE_WIDTH)
    return console
