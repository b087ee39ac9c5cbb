"""The solver's own error, importable by every ode module without an import cycle."""

from __future__ import annotations


class SolverError(RuntimeError):
    """The solve cannot finish with the current settings; the message says which to change."""


def nonfinite_initial_state() -> SolverError:
    """NaN or inf in y0: no step size or tolerance can help, so say so before solving."""
    return SolverError(
        "the initial state y0 is not finite (it contains NaN or inf): nothing to solve; "
        "the values feeding the ODE block have diverged"
    )
