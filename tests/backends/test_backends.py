"""backend=: the peer libraries solve the ODE block inside nodecli's own training loop.

In process: the matrix and its one-line errors, the gradients each peer's method gives
(against nodecli's own at tight tolerances), the NFE counts from the shared wrapper, the
record's versions and the missing-extra message. Subprocess tests are marked slow.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F

from nodecli.backends.command import matrix_markdown
from nodecli.backends.registry import BACKENDS, MATRIX, check_combination, distribution
from nodecli.config.compose import compose_config
from nodecli.config.environment import check_backend_installed
from nodecli.config.tree import conf_dir
from nodecli.errors import ConfigError
from nodecli.experiment.model import build_model
from nodecli.ode.methods import SENSEALGS, method_for
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec
from nodecli.record.provenance import versions

PEER_COMBINATIONS = [(b, s) for b, support in MATRIX.items() for s in support.sensealgs]


def test_backend_yaml_files_match_the_registry() -> None:
    assert sorted(p.stem for p in (conf_dir() / "backend").glob("*.yaml")) == sorted(BACKENDS)
    assert compose_config([]).backend.name == "nodecli"


@pytest.mark.parametrize("backend", list(MATRIX))
def test_unsupported_sensealg_is_one_line_naming_the_supported_ones(backend: str) -> None:
    missing = next(s for s in SENSEALGS if s not in MATRIX[backend].sensealgs)
    with pytest.raises(ConfigError) as info:
        compose_config([f"backend={backend}", f"sensealg={missing}"])
    message = str(info.value)
    assert "\n" not in message
    assert f"backend={backend} does not support sensealg={missing}" in message
    assert "sensealg=" + ", ".join(MATRIX[backend].sensealgs) in message


@pytest.mark.parametrize(("backend", "sensealg"), PEER_COMBINATIONS)
def test_supported_combinations_compose(backend: str, sensealg: str) -> None:
    cfg = compose_config([f"backend={backend}", f"sensealg={sensealg}"])
    assert (cfg.backend.name, cfg.sensealg.name) == (backend, sensealg)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["backend=torchdyn", "solver=bosh3"], "backend=torchdyn does not support solver=bosh3"),
        (
            ["backend=torchode", "sensealg=adjoint", "sensealg.seminorm=true"],
            "backend=torchode does not support sensealg.seminorm=true",
        ),
        (
            ["backend=torchdiffeq", "layer_style=compiled"],
            "backend=torchdiffeq does not support layer_style=compiled",
        ),
        (
            ["backend=torchdyn", "solver.step_size=0.1"],
            "backend=torchdyn does not support solver.step_size=0.1 with solver=tsit5",
        ),
        (
            ["backend=torchdiffeq", "solver.step_size=0.1"],
            "backend=torchdiffeq does not support solver.step_size=0.1 with solver=tsit5",
        ),
        (
            ["backend=torchode", "sensealg=adjoint", "sensealg.adjoint_rtol=1e-6"],
            "backend=torchode does not support sensealg.adjoint_rtol=1e-06",
        ),
        (  # its ODE parameter gradients came out zero (a shape error in training)
            ["backend=torchode", "sensealg=adjoint", "layer_style=functional"],
            "backend=torchode does not support layer_style=functional with sensealg=adjoint",
        ),
    ],
)
def test_options_a_library_lacks_are_refused(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        compose_config(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["backend=torchode"],
        ["backend=torchode", "sensealg=adjoint"],
        ["backend=torchdiffeq", "sensealg=adjoint"],
        ["backend=torchdyn"],
        ["backend=torchdyn", "sensealg=interpolating"],
        ["backend=torchdiffeq", "solver=rk4", "solver.step_size=1e-5"],
    ],
)
def test_every_peer_takes_a_step_limit(overrides: list[str]) -> None:
    """nodecli's counting wrapper bounds every peer solve, so raising solver.max_steps is
    always a way out (rk4 with a tiny step said "raise solver.max_steps", then refused it)."""
    config = compose_config([*overrides, "solver.max_steps=200000"])
    assert config.solver.max_steps == 200000


def test_a_refusal_does_not_list_max_steps_as_a_per_sensealg_option() -> None:
    with pytest.raises(ConfigError) as caught:
        compose_config(["backend=torchdiffeq", "solver.step_size=0.1"])
    assert "max_steps" not in str(caught.value)


def test_nodecli_backend_accepts_everything_the_matrix_refuses() -> None:
    assert (
        check_combination("nodecli", "gauss", {"checkpointing": True}, "dopri8", "compiled") is None
    )


def test_matrix_table_has_a_row_per_sensealg_and_a_column_per_backend() -> None:
    lines = matrix_markdown().splitlines()
    assert lines[0].count("|") == len(BACKENDS) + 2
    assert [line.split("|")[1].strip(" `") for line in lines[2 : 2 + len(SENSEALGS)]] == list(
        SENSEALGS
    )


def test_missing_peer_library_is_one_line_naming_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchdyn" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'nodecli\[peers\]'"):
        check_backend_installed("torchdyn")
    check_backend_installed("nodecli")  # needs nothing


def test_record_versions_name_the_backend_library() -> None:
    assert "torchdyn" in versions(distribution("torchdyn"))
    assert "torchode" in versions(distribution("torchode"))
    assert "torchdyn" not in versions(distribution("nodecli"))


def _gradient(backend: str, sensealg: str, style: str = "module", tol: float = 1e-9):
    """(loss, grads, nfe fwd, nfe bwd) of one float64 batch at tight tolerances."""
    torch.manual_seed(0)
    spec = SolveSpec(SolverSettings(rtol=tol, atol=tol), method_for(sensealg))
    model = build_model(style, spec, backend=backend).double()
    x = torch.rand(16, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 10
    counter = model.ode.counter
    loss = F.cross_entropy(model(x), y)
    after_forward = model.ode.nfe
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return loss.item(), grads, after_forward, model.ode.nfe - after_forward, counter


@pytest.mark.parametrize(("backend", "sensealg"), PEER_COMBINATIONS)
def test_peer_gradients_agree_with_nodecli(backend: str, sensealg: str) -> None:
    ref_loss, ref_grads, *_ = _gradient("nodecli", "direct")
    loss, grads, nfe_f, nfe_b, _ = _gradient(backend, sensealg)
    assert loss == pytest.approx(ref_loss, rel=1e-8)
    num = sum(float((g - r).norm() ** 2) for g, r in zip(grads, ref_grads, strict=True)) ** 0.5
    den = sum(float(r.norm() ** 2) for r in ref_grads) ** 0.5
    assert num / den < 1e-5
    assert nfe_f > 0 and nfe_b > 0


@pytest.mark.parametrize(
    ("backend", "sensealg"), [("torchdiffeq", "adjoint"), ("torchdyn", "interpolating")]
)
def test_peer_adjoint_backward_counts_an_f_call_and_a_vjp_per_evaluation(
    backend: str, sensealg: str
) -> None:
    _, _, nfe_f, nfe_b, counter = _gradient(backend, sensealg, tol=1e-3)
    backward_calls = counter.calls - nfe_f
    assert backward_calls > 0
    assert nfe_b == 2 * backward_calls


def test_peer_direct_counts_a_vjp_per_recorded_evaluation() -> None:
    _, _, nfe_f, nfe_b, counter = _gradient("torchdiffeq", "direct", tol=1e-3)
    assert counter.calls == nfe_f  # backpropagation calls f no more
    assert 0 < nfe_b <= nfe_f


def test_torchdiffeq_fixed_step_solver_takes_nodecli_step_size() -> None:
    """rk4 with step_size 0.25: 4 steps of 4 evaluations, as nodecli's own rk4 makes."""
    cfg = compose_config(["backend=torchdiffeq", "solver=rk4", "solver.step_size=0.25"])
    torch.manual_seed(0)
    model = build_model("module", SolveSpec(cfg.solver, cfg.sensealg), backend="torchdiffeq")
    reference = build_model("module", SolveSpec(cfg.solver, cfg.sensealg))
    reference.load_state_dict(model.state_dict())
    x = torch.rand(8, 784)
    torch.testing.assert_close(model(x), reference(x))
    assert model.ode.counter.calls == reference.ode.counter.calls == 16


@pytest.mark.parametrize("backend", list(MATRIX))
def test_functional_style_gives_the_module_style_gradient(backend: str) -> None:
    _, module, *_ = _gradient(backend, "direct", "module", tol=1e-6)
    _, functional, *_ = _gradient(backend, "direct", "functional", tol=1e-6)
    for a, b in zip(module, functional, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", list(MATRIX))
def test_every_backend_saves_the_same_parameters(backend: str) -> None:
    """The peer's solve objects are not submodules: checkpoints have the same keys."""
    reference = build_model("module", SolveSpec()).state_dict()
    peer = build_model("module", SolveSpec(), backend=backend).state_dict()
    assert list(peer) == list(reference)


@pytest.mark.slow
def test_train_unsupported_combination_exits_2(cli) -> None:
    done = cli("train", "backend=torchode", "sensealg=checkpoint")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "torchode supports: sensealg=direct, adjoint" in done.stderr


def test_train_with_a_peer_records_backend_and_version(cli_here, tmp_path) -> None:
    done = cli_here("train", "backend=torchdyn", "sensealg=adjoint", "train.epochs=1", "data.n=200")
    assert done.returncode == 0, done.stderr
    (run_json,) = tmp_path.glob("outputs/runs/*/*/run.json")
    info = json.loads(run_json.read_text())
    assert info["backend"] == "torchdyn"
    assert info["versions"]["torchdyn"]
    assert "name: torchdyn" in (run_json.parent / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_backends_command_lists_the_matrix(cli) -> None:
    done = cli("backends")
    assert done.returncode == 0
    assert "interpolated_adjoint" in done.stdout and "BacksolveAdjoint" in done.stdout


def test_repeated_bundled_digits_reach_mnist_size() -> None:
    """dataset=mnist_bundled_repeated (benchmark scale): 60 000 digits, 12 copies of each."""
    from nodecli.experiment.data import dataset_size, load_dataset

    cfg = compose_config(["dataset=mnist_bundled_repeated", "data.n=null"])
    assert dataset_size(cfg.dataset.name) == 60_000
    data = load_dataset(cfg.dataset.name, 2400, 0.5, 0)
    assert (len(data.y_train), len(data.y_test)) == (1200, 1200)
    assert torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10).min() > 0


def test_torchode_giving_up_is_a_solver_error() -> None:
    # torchode reports max_steps in `status` without raising: the run failed later with
    # "Adam.step: a parameter has no gradient".
    from nodecli.ode.errors import SolverError

    torch.manual_seed(0)
    spec = SolveSpec(SolverSettings(max_steps=1), method_for("direct"))
    model = build_model("module", spec, backend="torchode")
    with pytest.raises(SolverError, match=r"torchode exceeded solver.max_steps=1"):
        model(torch.rand(4, 784))
