"""The peer backends' solves: torchdiffeq, torchdyn and torchode, each through its own API.

`peer_solver(backend, spec, field, counter, t1)` returns a callable y0 → y(t1) built the
way the library's documentation shows (torchdiffeq `odeint` / `odeint_adjoint`, torchdyn
`NeuralODE`, torchode `ODETerm` + step method + `IntegralController` + adjoint object).
Every library evaluates the same vector field through nodecli's `PeerCounter`, so the
NFE columns count the same thing as for backend=nodecli, and every solve is bounded the
same way: `solver.max_steps` steps' worth of evaluations per solve, whatever the library
(torchdyn has no step limit of its own; a long horizon ran until the machine ran out of
memory). The libraries are imported only
when their backend is built: importing them costs start-up time (torchdiffeq pulls in
scipy) and they are optional (the `peers` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from nodecli.backends.registry import MATRIX
from nodecli.ode.counting import CountingField
from nodecli.ode.errors import SolverError
from nodecli.ode.spec import SolveSpec
from nodecli.ode.tableaus import TABLEAUS
from nodecli.ode.vector_field import StyledField

__all__ = ["PeerCounter", "peer_solver"]

PeerSolve = Callable[[Tensor], Tensor]


class PeerCounter(CountingField):
    """nodecli's counting wrapper with the peers' backward passes counted like nodecli's,
    and the evaluation bound that stands in for a step limit the library may lack.

    Backpropagated solves (direct): when the gradient reaches y(t1), one VJP per recorded
    forward evaluation (as `direct`). Adjoint solves: every evaluation during backward
    is an f call plus the VJP the library takes of it, 2 each (as nodecli's adjoints).
    One solve (forward, or an adjoint's backward) may take at most `max_evaluations`
    evaluations (set by `limit`); one more is a SolverError naming solver.max_steps.
    """

    def __init__(self, f: Callable[[float | Tensor, Tensor], Tensor], autonomous: bool) -> None:
        super().__init__(f, autonomous=autonomous)
        self.in_backward = False
        self.in_solve = 0  # evaluations in the current solve
        self.max_evaluations: int | None = None
        self._limit_text = ""

    def limit(self, backend: str, method: str, max_steps: int) -> None:
        """Bound each solve to MAX_STEPS steps of METHOD (its stages each, plus the two
        evaluations a library may spend choosing the first step)."""
        stages = len(TABLEAUS[method].c)
        self.max_evaluations = (max_steps + 2) * stages
        self._limit_text = (
            f"backend={backend} exceeded solver.max_steps={max_steps} "
            f"({self.max_evaluations} evaluations of the vector field in one "
        )

    def __call__(self, t: float | Tensor, y: Tensor) -> Tensor:
        self.in_solve += 1
        if self.max_evaluations is not None and self.in_solve > self.max_evaluations:
            which = "backward (adjoint) solve" if self.in_backward else "solve"
            raise SolverError(
                f"{self._limit_text}{which}): raise solver.max_steps, loosen "
                "solver.rtol/atol, or shorten model.t1 (for a fixed-step solver: raise "
                "solver.step_size)"
            )
        out = super().__call__(t, y)
        if self.in_backward and out.requires_grad:
            self.backpropagated += 1  # the library's VJP of this evaluation
        return out

    def begin(self) -> int:
        """Call before a forward solve; returns the mark `finish` needs."""
        self.in_backward = False
        self.in_solve = 0
        return self._recorded

    def finish(self, y1: Tensor, recorded_before: int) -> None:
        """After the forward solve: count what the backward pass through Y1 does."""
        self.count_backward_on(y1, recorded_before)
        if y1.requires_grad:

            def hook(grad: Tensor) -> None:
                self.in_backward = True
                self.in_solve = 0

            y1.register_hook(hook)


class _Field(nn.Module):
    """The vector field as the peers want it: an nn.Module with forward(t, x) whose
    parameters are the model's (torchdyn and torchode adjoints read `.parameters()`).
    PER_SAMPLE (torchode, which steps each sample on its own) gives the field one time per
    sample, shaped (batch, 1, …) to broadcast against the state; with `shape` (one sample's
    state shape, set per solve) it takes and returns flat (batch, n) states, as torchode
    requires, and gives the field states of its own shape."""

    def __init__(self, field: StyledField, counter: PeerCounter, per_sample: bool = False) -> None:
        super().__init__()
        self.field = field
        self.counter = counter
        self.per_sample = per_sample
        self.shape: tuple[int, ...] | None = None

    def forward(self, t: Tensor, x: Tensor, args: Any = None) -> Tensor:
        # `args`: torchdyn calls vector fields that take t as vf(t, x, args=...).
        if not self.per_sample:
            return self.counter(t, x)
        n = len(x)
        state = x if self.shape is None else x.reshape(n, *self.shape)
        times = t.reshape(n, *(1 for _ in state.shape[1:])) if t.dim() == 1 else t
        return self.counter(times, state).reshape(x.shape)


def _torchdiffeq(spec: SolveSpec, field: StyledField, counter: PeerCounter, t1: float) -> PeerSolve:
    # Deferred: importing torchdiffeq pulls in scipy (~0.7 s) that other backends never need.
    import torchdiffeq

    from nodecli.ode.torchdiffeq_tsit5 import register_tsit5

    register_tsit5()  # torchdiffeq has no Tsit5: nodecli's tableau in its RK framework
    solver, method = spec.solver, spec.sensealg
    options: dict[str, Any] = (
        {"step_size": solver.step_size}
        if solver.step_size is not None
        else {"max_num_steps": solver.max_steps}
    )
    common = dict(rtol=solver.rtol, atol=solver.atol, method=solver.method, options=options)
    adjoint = method.name == "adjoint"

    def odeint(y0: Tensor) -> Tensor:
        t = torch.tensor([0.0, t1], dtype=y0.dtype, device=y0.device)
        if not adjoint:
            return torchdiffeq.odeint(counter, y0, t, **common)[-1]
        params = tuple(p for p in field.parameters() if p.requires_grad)
        return torchdiffeq.odeint_adjoint(
            counter,
            y0,
            t,
            **common,
            adjoint_rtol=method.adjoint_rtol,  # type: ignore[attr-defined]
            adjoint_atol=method.adjoint_atol,  # type: ignore[attr-defined]
            adjoint_options={"norm": "seminorm"} if method.seminorm else None,  # type: ignore[attr-defined]
            adjoint_params=params,
        )[-1]

    def solve(y0: Tensor) -> Tensor:
        try:
            return odeint(y0)
        except AssertionError as exc:  # torchdiffeq's own step limit is an assert
            if "max_num_steps" not in str(exc):
                raise
            raise SolverError(
                f"backend=torchdiffeq exceeded solver.max_steps={solver.max_steps}: raise "
                "solver.max_steps, loosen solver.rtol/atol, or shorten model.t1"
            ) from None

    return solve


_TORCHDYN_SENSITIVITY = {
    "direct": "autograd",
    "adjoint": "adjoint",
    "interpolating": "interpolated_adjoint",
}


def _torchdyn(spec: SolveSpec, field: StyledField, counter: PeerCounter, t1: float) -> PeerSolve:
    # Deferred: optional dependency (the peers extra), imported only for backend=torchdyn.
    from torchdyn.core import NeuralODE

    solver, method = spec.solver, spec.sensealg
    backward = method.backward_settings(solver) if hasattr(method, "backward_settings") else solver
    node = NeuralODE(
        _Field(field, counter),
        sensitivity=_TORCHDYN_SENSITIVITY[method.name],
        solver=solver.method,
        atol=solver.atol,
        rtol=solver.rtol,
        atol_adjoint=backward.atol,
        rtol_adjoint=backward.rtol,
        return_t_eval=False,
    )

    def solve(y0: Tensor) -> Tensor:
        t_span = torch.tensor([0.0, t1], dtype=y0.dtype, device=y0.device)
        return node(y0, t_span)[-1]

    return solve


def _torchode(spec: SolveSpec, field: StyledField, counter: PeerCounter, t1: float) -> PeerSolve:
    # Deferred: optional dependency (the peers extra), imported only for backend=torchode.
    import torchode as to

    solver, method = spec.solver, spec.sensealg
    flat = _Field(field, counter, per_sample=True)
    term = to.ODETerm(flat)
    step = {"tsit5": to.Tsit5, "dopri5": to.Dopri5}[solver.method](term=term)
    controller = to.IntegralController(atol=solver.atol, rtol=solver.rtol, term=term)
    if method.name == "adjoint":
        adjoint: Any = to.BacksolveAdjoint(term, step, controller)
    else:
        adjoint = to.AutoDiffAdjoint(step, controller, max_steps=solver.max_steps)

    def solve(y0: Tensor) -> Tensor:
        # torchode solves (batch, n) states: a conv state travels flattened.
        flat.shape = tuple(y0.shape[1:]) if y0.dim() > 2 else None
        t_eval = torch.tensor([0.0, t1], dtype=y0.dtype, device=y0.device).expand(len(y0), 2)
        solution = adjoint.solve(to.InitialValueProblem(y0=y0.flatten(1), t_eval=t_eval))
        _check_torchode_status(solution.status, solver.max_steps)
        return solution.ys[:, -1].reshape(y0.shape)

    return solve


def _check_torchode_status(status: Tensor, max_steps: int) -> None:
    """torchode reports a solve that gave up in `status` instead of raising; its ys are
    then unfinished (the run failed later with "a parameter has no gradient"). Raise the
    SolverError nodecli's own solver raises. One host read per solve."""
    from torchode.status_codes import REACHED_DT_MIN, REACHED_MAX_STEPS, SUCCESS

    codes = set(status.unique().tolist())
    if codes <= {SUCCESS}:
        return
    if REACHED_MAX_STEPS in codes:
        raise SolverError(
            f"torchode exceeded solver.max_steps={max_steps}: raise solver.max_steps or "
            "loosen solver.rtol/atol"
        )
    why = "its step size underflowed" if REACHED_DT_MIN in codes else f"status {sorted(codes)}"
    raise SolverError(
        f"torchode gave up ({why}; the state may have diverged): loosen solver.rtol/atol"
    )


_BUILDERS: dict[str, Callable[[SolveSpec, StyledField, PeerCounter, float], PeerSolve]] = {
    "torchdiffeq": _torchdiffeq,
    "torchdyn": _torchdyn,
    "torchode": _torchode,
}
assert set(_BUILDERS) == set(MATRIX), "every backend in the matrix has a builder"


def peer_solver(
    backend: str, spec: SolveSpec, field: StyledField, counter: PeerCounter, t1: float
) -> PeerSolve:
    """The solve y0 → y(t1) of BACKEND (validated against `MATRIX` by the config),
    each solve bounded through COUNTER by solver.max_steps."""
    counter.limit(backend, spec.solver.method, spec.solver.max_steps)
    return _BUILDERS[backend](spec, field, counter, t1)
