"""The solver settings: one typed object shared by the ode package and the config.

`SolverSettings` is both what the integrator calls read and the Hydra schema of the
`solver` config group, so each default (rtol, atol, max_steps) is written here only.
Torch-free, so that the CLI can validate a command line without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SolverSettings:
    """How to integrate: a tableau name (`tableaus.TABLEAUS`) and its step control.

    Adaptive tableaus control the local error with rtol/atol unless `step_size` is set;
    fixed-step tableaus need `step_size`. `max_steps` bounds the attempted steps.
    """

    method: str = "tsit5"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float | None = None
    max_steps: int = 10_000

    def integrate_kwargs(self) -> dict[str, object]:
        """These settings as keyword arguments of `solver.integrate`."""
        return {
            "method": self.method,
            "rtol": self.rtol,
            "atol": self.atol,
            "step_size": self.step_size,
            "max_steps": self.max_steps,
        }
