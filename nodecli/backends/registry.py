"""Backends: which library solves the ODE block (`backend=` config group).

`nodecli` (default) is nodecli's own integrator and gradient methods; `torchdiffeq`,
`torchdyn` and `torchode` solve the block with that library's own API, as its
documentation shows. Everything around the solve (data, init, batches, optimiser, timers,
the NFE counting wrapper around the vector field, accuracy, the run record) is nodecli's
and the same for every backend.

This module is the one table of what each peer supports (`MATRIX`) and is torch-free, so
that the CLI validates `backend=… sensealg=… solver=…` before importing anything heavy.
The solve code is in nodecli/backends/peers.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BACKENDS",
    "MATRIX",
    "PEERS_EXTRA",
    "BackendConfig",
    "PeerSupport",
    "check_combination",
    "distribution",
]

#: The pip extra that installs every peer library.
PEERS_EXTRA = "peers"


@dataclass
class BackendConfig:
    """The `backend` config group's schema: which library solves the ODE block."""

    name: str = "nodecli"


@dataclass(frozen=True)
class PeerSupport:
    """What one peer library offers: nodecli sensealg → the library's gradient method,
    nodecli solver → the library's solver name, and which option keys it honours."""

    distribution: str
    sensealgs: dict[str, str]
    solvers: dict[str, str]
    #: sensealg keys that may differ from their defaults (others must stay at default)
    option_keys: tuple[str, ...] = ()
    #: layer styles it runs (compiled fuses nodecli's own solver step only)
    layer_styles: tuple[str, ...] = ("module", "functional")
    #: solvers that take `solver.step_size` (fixed steps); the others control their steps
    fixed_step_solvers: tuple[str, ...] = ()
    #: sensealg → layer styles it cannot run with this library
    style_exclusions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def step_limit_sensealgs(self) -> tuple[str, ...]:
        """Sensealgs whose solves honour `solver.max_steps`: all of them, since nodecli's
        counting wrapper bounds every peer solve's evaluations (nodecli.backends.peers)."""
        return tuple(self.sensealgs)


#: backend → what it supports. The README's backend matrix is this table.
MATRIX: dict[str, PeerSupport] = {
    "torchdiffeq": PeerSupport(
        distribution="torchdiffeq",
        sensealgs={
            "direct": "odeint",
            "adjoint": 'odeint_adjoint (seminorm=true: adjoint_options=dict(norm="seminorm"))',
        },
        solvers={
            "tsit5": "tsit5 (nodecli's tableau, registered)",
            "dopri5": "dopri5",
            "bosh3": "bosh3",
            "dopri8": "dopri8",
            "rk4": "rk4 (3/8 rule)",
            "midpoint": "midpoint",
            "euler": "euler",
        },
        option_keys=("seminorm", "adjoint_rtol", "adjoint_atol"),
        fixed_step_solvers=("rk4", "midpoint", "euler"),
    ),
    "torchdyn": PeerSupport(
        distribution="torchdyn",
        sensealgs={
            "direct": "NeuralODE(sensitivity='autograd')",
            "adjoint": "NeuralODE(sensitivity='adjoint')",
            "interpolating": "NeuralODE(sensitivity='interpolated_adjoint')",
        },
        solvers={"tsit5": "tsit5", "dopri5": "dopri5"},
        option_keys=("adjoint_rtol", "adjoint_atol"),
    ),
    "torchode": PeerSupport(
        distribution="torchode",
        sensealgs={"direct": "AutoDiffAdjoint", "adjoint": "BacksolveAdjoint"},
        solvers={"tsit5": "Tsit5", "dopri5": "Dopri5"},
        # BacksolveAdjoint takes its parameter VJPs through functional_call on the field
        # module, which the functional style's once-per-solve weights never see: its ODE
        # gradients came out zero (or, for 1-D states, a shape error).
        style_exclusions={"adjoint": ("functional",)},
    ),
}

#: Every backend, the default first.
BACKENDS: tuple[str, ...] = ("nodecli", *MATRIX)

# Option values that mean "the library's default behaviour" (nothing to map).
_NEUTRAL: dict[str, object] = {
    "seminorm": False,
    "adjoint_rtol": None,
    "adjoint_atol": None,
    "checkpointing": False,
}


def distribution(backend: str) -> str | None:
    """The pip distribution a backend needs (None for nodecli's own)."""
    support = MATRIX.get(backend)
    return support.distribution if support else None


def supported_text(backend: str) -> str:
    """'sensealg=direct, adjoint; solver=tsit5, dopri5; layer_style=module, functional'."""
    s = MATRIX[backend]
    excluded = "".join(
        f" ({name}: not {', '.join(styles)})" for name, styles in s.style_exclusions.items()
    )
    return (
        f"sensealg={', '.join(s.sensealgs)}; solver={', '.join(s.solvers)}; "
        f"layer_style={', '.join(s.layer_styles)}{excluded}"
    )


def check_combination(
    backend: str,
    sensealg: str,
    options: dict[str, object],
    solver: str,
    layer_style: str,
    step_size: float | None = None,
) -> str | None:
    """None when BACKEND runs this combination, else one line naming what it supports.

    OPTIONS are the sensealg's keys (seminorm, adjoint_rtol, ...): one the library has no
    counterpart for must stay at its neutral value (gauss's checkpointing=true has no
    neutral value, but gauss itself is no peer's). STEP_SIZE (solver.step_size) is taken
    only by the library's fixed-step solvers: its adaptive ones have no fixed-step mode.
    solver.max_steps is not checked: every peer solve honours it (nodecli's counting
    wrapper bounds the evaluations), so raising it is always a way out of a step limit."""
    if backend not in MATRIX:
        return None
    s = MATRIX[backend]
    problem = None
    if sensealg not in s.sensealgs:
        problem = f"sensealg={sensealg}"
    elif solver not in s.solvers:
        problem = f"solver={solver}"
    elif layer_style not in s.layer_styles:
        problem = f"layer_style={layer_style}"
    elif layer_style in s.style_exclusions.get(sensealg, ()):
        problem = f"layer_style={layer_style} with sensealg={sensealg}"
    elif step_size is not None and solver not in s.fixed_step_solvers:
        problem = f"solver.step_size={step_size} with solver={solver}"
    else:
        for key, value in options.items():
            if key in _NEUTRAL and key not in s.option_keys and value != _NEUTRAL[key]:
                shown = str(value).lower() if isinstance(value, bool) else value
                problem = f"sensealg.{key}={shown}"
                break
            if key == "seminorm" and value and sensealg != "adjoint":
                problem = f"sensealg.{key}={value} with sensealg={sensealg}"
                break
    if problem is None:
        return None
    keys = ", ".join(f"sensealg.{k}" for k in s.option_keys) or "none"
    fixed = ", ".join(s.fixed_step_solvers) or "none"
    return (
        f"backend={backend} does not support {problem}; {backend} supports: "
        f"{supported_text(backend)}; sensealg keys: {keys}; solver.step_size: {fixed} "
        "(nodecli backends lists the matrix)"
    )
