"""sensealg=direct: autograd through every operation of nodecli's own solver.

Discretise-then-optimise: the accepted step sizes are constants (as in diffrax), so the
gradient is that of the discrete computation. layer_style=compiled may hand in a fused
step (`stepper`) that replaces the eager stage loop of adaptive steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from nodecli.ode.counting import CountingField
from nodecli.ode.solver import Stepper
from nodecli.ode.spec import SolveSpec, forward_solve


def direct_solve(
    f: CountingField,
    y0: Tensor,
    params: Sequence[Tensor],
    t0: float,
    t1: float,
    spec: SolveSpec,
    stepper: Stepper | None = None,
) -> Tensor:
    """y(t1) with autograd recording the whole solve; backward evaluations are counted
    when the gradient reaches y(t1)."""
    recorded_before = f._recorded
    stepper = stepper if spec.solver.step_size is None else None
    y1 = forward_solve(f, y0, t0, t1, spec.solver, stepper=stepper).y1
    f.count_backward_on(y1, recorded_before)
    return y1
