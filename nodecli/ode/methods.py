"""The registry of gradient (sensitivity) methods and their typed options.

Each method is a dataclass of its own options (as diffrax's adjoint objects): the same
class is the Hydra schema of its `sensealg=<name>` option, so a key another method
uses (`sensealg=direct sensealg.seminorm=true`) is rejected while composing. The method
is chosen once, by picking the class: what it can do are class flags, what it does is
the solve function `sensitivity.IMPLEMENTATIONS` maps the class to (kept out of here so
that this module stays torch-free for the CLI and imports stay one-way).

Adding a method: its implementation in one file of nodecli/ode/, an options class here
listed in `METHODS`, its line in `sensitivity.IMPLEMENTATIONS`, and
conf/sensealg/<name>.yaml naming the schema (tests/test_config.py checks they agree).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from nodecli.ode.settings import SolverSettings


@dataclass
class GradientMethod:
    """Options common to every method: only its name (the config option)."""

    name: str = "direct"

    #: gradients come from autograd through the solver's own operations (direct and
    #: checkpoint give the same gradient), not from an adjoint ODE solved backwards.
    backpropagates: ClassVar[bool] = False
    #: the method brings its own backward pass (an autograd.Function), so a solve with
    #: nothing to differentiate runs as a plain forward solve.
    custom_backward: ClassVar[bool] = True
    #: the method differentiates nodecli's integrator itself, so layer_style=compiled's
    #: fused step can replace the eager stage loop.
    uses_fused_step: ClassVar[bool] = False

    @classmethod
    def option_keys(cls) -> tuple[str, ...]:
        """The config keys this method accepts, e.g. ('name', 'seminorm', ...)."""
        return tuple(f.name for f in fields(cls))


class _BackwardTolerances:
    """Mixin of methods that solve an adjoint backwards with their own tolerances."""

    adjoint_rtol: float | None
    adjoint_atol: float | None

    def backward_settings(self, solver: SolverSettings) -> SolverSettings:
        """The solver settings of backward solves: adjoint_rtol/atol, else the forward's."""
        return replace(
            solver,
            rtol=self.adjoint_rtol if self.adjoint_rtol is not None else solver.rtol,
            atol=self.adjoint_atol if self.adjoint_atol is not None else solver.atol,
        )


@dataclass
class Direct(GradientMethod):
    """Backpropagate through every solver operation (discretise-then-optimise)."""

    name: str = "direct"

    backpropagates: ClassVar[bool] = True
    custom_backward: ClassVar[bool] = False
    uses_fused_step: ClassVar[bool] = True


@dataclass
class Checkpoint(GradientMethod):
    """The gradient of direct, keeping only accepted step states; steps recomputed."""

    name: str = "checkpoint"

    backpropagates: ClassVar[bool] = True


@dataclass
class Adjoint(GradientMethod, _BackwardTolerances):
    """Continuous backsolve adjoint: y, λ and μ solved backwards together.

    seminorm leaves the parameter adjoints out of the backward error norm; adjoint_rtol
    and adjoint_atol (None: the forward solver's) are the backward tolerances.
    """

    name: str = "adjoint"
    seminorm: bool = False
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None


@dataclass
class Interpolating(GradientMethod, _BackwardTolerances):
    """Continuous adjoint for (λ, μ) only; y(t) read from the forward dense output.

    checkpointing=true holds only y0 and recomputes the forward dense output in backward.
    """

    name: str = "interpolating"
    seminorm: bool = False
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    checkpointing: bool = False


@dataclass
class Gauss(GradientMethod, _BackwardTolerances):
    """Adjoint λ solved backwards; ∫ λᵀ ∂f/∂p dt by Gauss–Legendre quadrature per step.

    No seminorm: the backward state is λ alone. checkpointing (default true) holds only
    y0 and recomputes the forward dense output in backward.
    """

    name: str = "gauss"
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    checkpointing: bool = True


#: Every gradient method, by config name, in the order --help, gradcheck and the
#: benchmark list them.
METHODS: dict[str, type[GradientMethod]] = {
    cls.name: cls  # type: ignore[misc]  # the dataclass default of `name`
    for cls in (Direct, Adjoint, Checkpoint, Interpolating, Gauss)
}
SENSEALGS: tuple[str, ...] = tuple(METHODS)


def method_for(name: str, **options: Any) -> GradientMethod:
    """The options object of method NAME (KeyError names the valid ones)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown sensealg {name!r}; valid: {', '.join(SENSEALGS)}") from None
    return cls(**options)


def schema_name(name: str) -> str:
    """The ConfigStore name of a method's schema (conf/sensealg/<name>.yaml uses it)."""
    return f"nodecli_sensealg_{name}"
