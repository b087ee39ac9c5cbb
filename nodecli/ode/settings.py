"""The solver settings: one typed object shared by the ode package and the config.

`SolverSettings` is both what the integrator calls read and the Hydra schema of the
`solver` config group, so each default (rtol, atol, max_steps) is written here only.
Torch-free, so that the CLI can validate a command line without importing torch.
"""

from __future__ import annotations

import math
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


def fixed_step_count(span: float, step_size: float) -> int | float:
    """Steps of STEP_SIZE over |SPAN|, the last one shortened to end on t1 (at least one);
    math.inf when the count overflows a float. The 1e-9 slack stops rounding (1/0.1 =
    10.000000000000002) adding a sliver step. Config validation and the solver both count
    with this, so a run the config accepts never exceeds max_steps at epoch 1."""
    ratio = abs(span) / step_size * (1.0 - 1e-9)
    return max(1, math.ceil(ratio)) if math.isfinite(ratio) else math.inf
