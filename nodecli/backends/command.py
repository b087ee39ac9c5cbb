"""`nodecli backends`: the sensealg × backend matrix and which peer libraries are installed."""

from __future__ import annotations

from nodecli.backends.registry import MATRIX, PEERS_EXTRA, supported_text


def matrix_markdown() -> str:
    """The backend matrix as a markdown table (README, `nodecli backends`)."""
    from nodecli.ode.methods import SENSEALGS  # torch-free

    lines = [
        "| sensealg | nodecli | " + " | ".join(MATRIX) + " |",
        "| --- | --- | " + " | ".join("---" for _ in MATRIX) + " |",
    ]
    for name in SENSEALGS:
        cells = [f"`{s.sensealgs[name]}`" if name in s.sensealgs else "–" for s in MATRIX.values()]
        lines.append(f"| `{name}` | own | " + " | ".join(cells) + " |")
    lines.append(
        "| solvers | all | " + " | ".join(", ".join(s.solvers) for s in MATRIX.values()) + " |"
    )
    lines.append(
        "| `solver.step_size` | all | "
        + " | ".join(", ".join(s.fixed_step_solvers) or "–" for s in MATRIX.values())
        + " |"
    )
    lines.append(
        "| `solver.max_steps` | all | "
        + " | ".join(", ".join(s.step_limit_sensealgs) or "–" for s in MATRIX.values())
        + " |"
    )
    lines.append(
        "| layer styles | all | "
        + " | ".join(supported_text(b).split("layer_style=")[1] for b in MATRIX)
        + " |"
    )
    return "\n".join(lines)


def backends_command(args: list[str]) -> int:
    """`nodecli backends`: the matrix, and whether each peer library is installed."""
    import importlib.metadata

    from nodecli.errors import UsageError

    if args and args[0] not in ("-h", "--help"):
        raise UsageError(f"nodecli backends takes no arguments (got {args[0]!r})")
    print("Which gradient method (sensealg) and solver each backend= solves with:\n")
    print(matrix_markdown())
    print()
    for name, support in MATRIX.items():
        try:
            state = importlib.metadata.version(support.distribution)
        except importlib.metadata.PackageNotFoundError:
            state = f"not installed (pip install 'nodecli[{PEERS_EXTRA}]')"
        print(f"backend={name}: {support.distribution} {state}")
    print("\nExample: nodecli train backend=torchdyn sensealg=interpolating")
    return 0
