"""`nodecli backends`: the sensealg × backend matrix and which peer libraries are installed.

A terminal gets a rich table; a pipe or a file gets Markdown (what a README or an issue
takes), as does `--format markdown` (`--markdown`) anywhere; `--format rich` forces the table.
"""

from __future__ import annotations

import argparse
import importlib.metadata

from nodecli.backends.registry import MATRIX, PEERS_EXTRA, supported_text

FORMATS = ("rich", "markdown")
INTRO = "Which gradient method (sensealg) and solver each backend= solves with:"
EXAMPLE = "Example: nodecli train backend=torchdyn sensealg=interpolating"


def matrix_rows() -> tuple[list[str], list[list[str]]]:
    """The backend matrix as plain text cells: headers and rows (`–`: not supported)."""
    from nodecli.ode.methods import SENSEALGS  # torch-free

    headers = ["sensealg", "nodecli", *MATRIX]
    rows = [
        [name, "own", *(s.sensealgs.get(name, "–") for s in MATRIX.values())] for name in SENSEALGS
    ]
    rows.append(["solvers", "all", *(", ".join(s.solvers) for s in MATRIX.values())])
    rows.append(
        ["solver.step_size", "all"]
        + [", ".join(s.fixed_step_solvers) or "–" for s in MATRIX.values()]
    )
    rows.append(
        ["solver.max_steps", "all"]
        + [", ".join(s.step_limit_sensealgs) or "–" for s in MATRIX.values()]
    )
    rows.append(
        ["layer styles", "all"] + [supported_text(b).split("layer_style=")[1] for b in MATRIX]
    )
    return headers, rows


def matrix_markdown() -> str:
    """The backend matrix as a Markdown table (README, `nodecli backends --markdown`):
    names and calls as code."""
    headers, rows = matrix_rows()
    n_names = len(rows) - 4  # the sensealg rows; the last four describe options

    def code(text: str) -> str:
        return text if text in ("–", "own", "all") else f"`{text}`"

    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    for i, (name, *cells) in enumerate(rows):
        if i < n_names:
            name, cells = code(name), [cells[0], *(code(c) for c in cells[1:])]
        elif name.startswith("solver."):
            name = code(name)
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def installed_lines() -> list[str]:
    lines = []
    for name, support in MATRIX.items():
        try:
            state = importlib.metadata.version(support.distribution)
        except importlib.metadata.PackageNotFoundError:
            state = f"not installed (pip install 'nodecli[{PEERS_EXTRA}]')"
        lines.append(f"backend={name}: {support.distribution} {state}")
    return lines


def _parser() -> argparse.ArgumentParser:
    from nodecli.errors import raise_usage_errors

    parser = argparse.ArgumentParser(
        prog="nodecli backends",
        description="Which sensealg and solver each backend= supports, and which peer "
        "libraries are installed.",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="rich (a table) or markdown; default: rich on a terminal, markdown in a pipe",
    )
    parser.add_argument(
        "--markdown",
        dest="format",
        action="store_const",
        const="markdown",
        help="the same as --format markdown",
    )
    return raise_usage_errors(parser, "nodecli backends --help lists the options")


def backends_command(args: list[str]) -> int:
    """`nodecli backends`: the matrix, and whether each peer library is installed."""
    from nodecli.console import make_console

    options = _parser().parse_args(args)
    console = make_console()
    fmt = options.format or ("rich" if console.is_terminal else "markdown")
    if fmt == "markdown":
        text = [INTRO, "", matrix_markdown(), "", *installed_lines(), "", EXAMPLE]
        print("\n".join(text))
        return 0
    from rich.table import Table
    from rich.text import Text

    headers, rows = matrix_rows()
    table = Table(title=Text(INTRO), title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(Text(header), style="bold" if i == 0 else None)
    for i, cells in enumerate(rows):
        table.add_row(*(Text(c) for c in cells), end_section=i == len(rows) - 5)
    console.print(table)
    for line in installed_lines():
        console.print(line, markup=False)
    console.print(EXAMPLE, markup=False)
    return 0
