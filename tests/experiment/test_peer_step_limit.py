"""Every peer backend's solve is bounded by solver.max_steps through nodecli's counting
wrapper: torchdyn has no step limit of its own, so a long horizon ran until the machine
ran out of memory."""

from __future__ import annotations

import pytest
import torch

from nodecli.experiment.model import build_model
from nodecli.ode.errors import SolverError
from nodecli.ode.methods import method_for
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec


@pytest.mark.parametrize(
    ("backend", "sensealg", "solver"),
    [
        ("torchdyn", "direct", {}),
        ("torchdyn", "adjoint", {}),
        ("torchdyn", "interpolating", {}),
        ("torchode", "adjoint", {}),
        ("torchdiffeq", "direct", {}),
        ("torchdiffeq", "adjoint", {}),
        ("torchdiffeq", "direct", {"method": "rk4", "step_size": 0.01}),
    ],
)
def test_a_peer_solve_past_max_steps_is_a_solver_error_naming_the_key(
    backend: str, sensealg: str, solver: dict
) -> None:
    torch.manual_seed(0)
    spec = SolveSpec(SolverSettings(max_steps=20, **solver), method_for(sensealg))
    model = build_model("module", spec, t1=1000.0, backend=backend)
    with pytest.raises(SolverError, match=rf"backend={backend} exceeded solver\.max_steps=20"):
        model(torch.rand(4, 784))
