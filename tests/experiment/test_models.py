"""The `model` group: mlp (the reference), conv (torchdiffeq's ODE-Net) and custom (a
user's field by `_target_`), through every gradient method, layer style and backend."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from nodecli.config.compose import JobComposer, compose_config
from nodecli.config.environment import check_environment
from nodecli.config.schema import SENSEALGS
from nodecli.errors import ConfigError
from nodecli.experiment.memory import MemoryProbe
from nodecli.record.read import read_metrics_rows
from nodecli.train.loop import model_for, run_experiment

FIELDS = Path(__file__).resolve().parents[1] / "fields"
CONV = ["model=conv", "model.hidden=8"]  # 8 channels: the same network, small enough for tests
# compose_config's Configs and errors, one Hydra composition per choice of groups: the
# tests below compose a model to train or to check, not to test the composing.
compose = JobComposer()


def custom(name: str = "TimeMLP", *extra: str) -> list[str]:
    return ["model=custom", f"model.field._target_=user_fields.{name}", *extra]


@pytest.fixture(autouse=True)
def user_fields_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/fields on sys.path, as a user's PYTHONPATH would put their package."""
    monkeypatch.syspath_prepend(str(FIELDS))


def train(tmp_path: Path, overrides: list[str]) -> tuple[list[dict], dict]:
    """Run the experiment in process (checks first, as `nodecli train` does)."""
    config = compose([*TINY, "data.n=20", "train.batch_size=18", *overrides])  # one batch
    check_environment(config)
    run_dir = tmp_path / "run"
    assert run_experiment(config, run_dir, overrides) == 0
    return read_metrics_rows(run_dir), json.loads((run_dir / "run.json").read_text())


# --- configuration -----------------------------------------------------------------


def test_mlp_is_the_default_model_and_the_model_keys_keep_working() -> None:
    config = compose_config(["model.hidden=7", "model.t1=0.5"])
    assert (config.model.name, config.model.latent, config.model.hidden) == ("mlp", 20, 7)
    assert config.model.t1 == 0.5 and not config.model.field


def test_conv_is_torchdiffeqs_odenet_with_a_configurable_width() -> None:
    model = model_for(compose_config(CONV))
    assert model.ode.state_shape == (8, 6, 6)
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    assert compose_config(["model=conv"]).model.hidden == 64


def test_custom_field_gets_latent_and_the_users_keys() -> None:
    config = compose_config(custom("TimeMLP", "model.latent=6", "+model.field.width=5"))
    check_environment(config)
    field = model_for(config).ode.field.net
    assert (field.l1.in_features, field.l1.out_features) == (6, 5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (custom("Missing"), "model.field._target_=user_fields.Missing does not import"),
        (["model=custom", "model.field._target_=no_such_pkg.F"], "does not import"),
        (custom("NotAModule"), "is not an nn.Module class"),
        (custom("make_field"), "is not an nn.Module class"),
        (custom("TimeMLP", "+model.field.depth=3"), "TimeMLP(latent, depth) failed"),
        (custom("WrongShape"), "returned shape (2, 1) float32 for a state y of shape (2, 20)"),
        (custom("WrongDtype"), "returned shape (2, 20) float64"),
        (custom("Broken"), "forward(t, y) raised RuntimeError"),
        (custom("NotFinite"), "NotFinite.forward(t, y) returned NaN or inf"),
        (
            ["model=custom", "model.field._target_=user_script.Field"],
            "model.field._target_=user_script.Field: importing it exited (SystemExit: 2",
        ),
        (
            [*custom("FrozenMLP"), "backend=torchdyn", "sensealg=adjoint"],
            "FrozenMLP has frozen parameters, which backend=torchdyn sensealg=adjoint",
        ),
        (
            [*custom("Drift"), "backend=torchdyn", "sensealg=interpolating"],
            "Drift.forward(t, y) does not depend on y, which backend=torchdyn",
        ),
    ],
)
def test_a_bad_custom_field_is_refused_in_one_line_before_the_run(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_environment(compose(overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_custom_needs_a_target_and_field_belongs_to_custom_only() -> None:
    with pytest.raises(ConfigError, match=r"model=custom needs model.field._target_"):
        compose_config(["model=custom"])
    with pytest.raises(ConfigError, match=r"model.field is only for model=custom"):
        compose_config(["+model.field._target_=user_fields.TimeMLP"])


# --- training ------------------------------------------------------------------------


@pytest.mark.parametrize("sensealg", SENSEALGS)
@pytest.mark.parametrize("model", ["conv", "custom"])
def test_conv_and_custom_train_with_every_sensealg(
    tmp_path: Path, model: str, sensealg: str
) -> None:
    rows, info = train(tmp_path, [*(CONV if model == "conv" else custom()), f"sensealg={sensealg}"])
    row = rows[0]
    assert float(row["train_loss"]) > 0 and int(row["nfe_forward"]) > 0
    assert int(row["nfe_backward"]) > 0
    assert float(row["hold_memory_bytes"]) > 0 and float(row["peak_memory_bytes"]) > 0
    assert info["status"] == "completed"
    assert info["model"]["name"] == model
    assert info["model"]["field_parameters"] > 0


def test_run_json_records_the_custom_fields_target_and_parameter_count(tmp_path: Path) -> None:
    _, info = train(tmp_path, custom("FrozenMLP", "model.latent=4", "+model.field.width=3"))
    # l1: 4*3+3 (frozen), time: 3, l2: 3*4+4
    assert info["model"] == {
        "name": "custom",
        "field_target": "user_fields.FrozenMLP",
        "field_parameters": 15 + 3 + 16,
        "field_trainable_parameters": 3 + 16,
        "parameters": info["model"]["parameters"],
    }
    assert info["model"]["parameters"] == (784 * 4 + 4) + 34 + (4 * 10 + 10)


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_a_parameter_free_field_trains_its_encoder_and_head(tmp_path: Path, sensealg: str) -> None:
    rows, info = train(tmp_path, [*custom("Decay"), f"sensealg={sensealg}"])
    assert info["model"]["field_parameters"] == 0 and float(rows[0]["train_loss"]) > 0


def gradients(overrides: list[str], x: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = model_for(compose(overrides)).double()
    F.cross_entropy(model(x), labels).backward()
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


TIGHT = ["solver.rtol=1e-9", "solver.atol=1e-9", "model.latent=6"]
X = torch.rand(5, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@functools.cache
def direct_gradients(field: str) -> list[torch.Tensor]:
    """FIELD's gradients on X by backpropagation through the solver, computed once."""
    return gradients([*custom(field), *TIGHT], X, torch.arange(5))


@pytest.mark.parametrize("sensealg", SENSEALGS)
@pytest.mark.parametrize("field", ["TimeMLP", "FrozenMLP"])
def test_every_sensealg_gives_a_user_fields_gradient(field: str, sensealg: str) -> None:
    """Against direct (backprop through the solver), in float64 at tight tolerances."""
    reference = direct_gradients(field)
    tight = TIGHT
    tolerances = [f"sensealg.{k}=1e-9" for k in ("adjoint_rtol", "adjoint_atol")]
    if sensealg in ("adjoint", "interpolating", "gauss"):
        tight = [*tight, *tolerances]
    got = gradients([*custom(field), *tight, f"sensealg={sensealg}"], X, torch.arange(5))
    for a, b in zip(got, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", ["conv", "custom"])
def test_functional_style_computes_what_module_style_computes(model: str) -> None:
    overrides = CONV if model == "conv" else custom()
    x, labels = torch.rand(4, 784), torch.arange(4)
    values = []
    for style in ("module", "functional"):
        torch.manual_seed(0)
        net = model_for(compose([*overrides, f"layer_style={style}"]))
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        values.append((loss.detach(), [p.grad for p in net.parameters()], net.ode.nfe))
    (loss_m, grads_m, nfe_m), (loss_f, grads_f, nfe_f) = values
    assert torch.equal(loss_m, loss_f) and nfe_m == nfe_f
    for a, b in zip(grads_m, grads_f, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["torchdiffeq", "torchdyn", "torchode"])
@pytest.mark.parametrize("model", ["conv", "custom"])
def test_peer_backends_solve_any_field(model: str, backend: str) -> None:
    overrides = [*(CONV if model == "conv" else custom()), "solver=dopri5"]
    x, labels = torch.rand(3, 784), torch.arange(3)
    losses = []
    for chosen in ("nodecli", backend):
        torch.manual_seed(0)
        net = model_for(compose([*overrides, f"backend={chosen}"]))
        loss = F.cross_entropy(net(x), labels)
        loss.backward()
        assert all(p.grad is not None for p in net.parameters())
        assert net.ode.nfe > 0
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-3, atol=1e-4)


def test_memory_probe_measures_a_conv_step_and_leaves_training_untouched() -> None:
    from nodecli.experiment.data import load_dataset

    config = compose([*CONV, "data.n=40"])
    data = load_dataset(config.dataset.name, 40, 0.9, 0, None)
    model = model_for(config)
    before = model.ode.nfe
    memory = MemoryProbe()(model, data, 8, torch.device("cpu"))
    assert memory.hold_bytes > 8 * 8 * 6 * 6 * 4  # at least one saved state of the block
    assert memory.peak_bytes >= memory.hold_bytes
    assert model.ode.nfe == before and all(p.grad is None for p in model.parameters())


@pytest.mark.slow  # torch.compile of the field's step: about a minute on a shared CPU
def test_compiled_style_compiles_a_user_fields_step() -> None:
    x, labels = torch.rand(4, 784), torch.arange(4)
    results = []
    for style in ("module", "compiled"):
        torch.manual_seed(0)
        net = model_for(compose([*custom(), f"layer_style={style}"]))
        assert (net.ode.warm_up(4) > 0) == (style == "compiled")
        F.cross_entropy(net(x), labels).backward()
        results.append(([p.grad for p in net.parameters()], net.ode.nfe))
    (grads_m, nfe_m), (grads_c, nfe_c) = results
    assert nfe_m == nfe_c
    for a, b in zip(grads_m, grads_c, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # inductor may reorder float ops
