"""Consoles that stay readable when output goes to a file, a pipe or an ASCII terminal.

Rich assumes 80 columns when stdout is not a terminal, which crushes wide tables into
one-character columns; a log file has no width limit, so tables get room there.

Output may hold characters the stream cannot encode (`±`, `×`, `·` in every report
format, a config value in any script): `fit_streams` makes stdout and stderr write an
ASCII stand-in (`+/-`, `x`) or an escape instead of raising UnicodeEncodeError, for
every command and every output format at once.
"""

from __future__ import annotations

import codecs
import sys

from rich.console import Console as RichConsole

# Stand-ins for the non-ASCII characters nodecli itself prints.
ASCII_FALLBACK = {
    "±": "+/-",
    "×": "x",
    "–": "-",
    "—": "-",
    "·": "/",
    "…": "...",
    "→": "->",
    "←": "<-",
    "≤": "<=",
    "≥": ">=",
    "‖": "||",
    "λ": "lambda",
    "μ": "mu",
    "∫": "integral",
}
FALLBACK_ERRORS = "nodecli-fallback"


def _fallback(exc: UnicodeError) -> tuple[str, int]:
    """The codec error handler: a stand-in for each character the stream cannot encode,
    else the character's escape (`\\u00e9`), so nothing is silently lost."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start : exc.end]
    out = "".join(
        ASCII_FALLBACK.get(c) or c.encode("ascii", "backslashreplace").decode("ascii") for c in text
    )
    return out, exc.end


codecs.register_error(FALLBACK_ERRORS, _fallback)


def fit_streams() -> None:
    """Make stdout and stderr fall back (ASCII_FALLBACK, then escapes) on characters
    their encoding lacks, where they would raise (errors='strict'; a chosen
    PYTHONIOENCODING=…:replace is kept)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            try:
                reconfigure(errors=FALLBACK_ERRORS)
            except (ValueError, OSError):  # a closed or detached stream: nothing to fit
                pass


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
