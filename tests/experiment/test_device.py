"""Device choice (issue 14): device=auto by measurement, the compiled-on-CUDA checks, a
run resumed on another device, the CUDA RNG left alone; plus the CUDA-only tests (marked
`cuda`, skipped without a GPU) for every sensealg × layer style, gradcheck and resume
across devices."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY, run_dirs

from nodecli.config.compose import compose_config
from nodecli.config.schema import LAYER_STYLES
from nodecli.errors import ConfigError
from nodecli.experiment import device as devices
from nodecli.ode.methods import METHODS
from nodecli.record.checkpoint import save_training_state
from nodecli.record.ownership import claim_folder, release_folder
from nodecli.train import auto_device
from nodecli.train.loop import make_optimizer, run_experiment

TIME_COLUMNS = ["train_time_s", "compile_time_s"]


def fake_steps(seconds: dict[str, float]):
    def make(device: torch.device):
        return lambda: time.sleep(seconds[str(device)])

    return make


def test_fastest_picks_the_device_with_the_faster_step() -> None:
    name, measured = devices.fastest(["cpu", "cpu:0"], fake_steps({"cpu": 0.004, "cpu:0": 0.001}))
    assert name == "cpu:0"
    assert measured["cpu"] > measured["cpu:0"] > 0
    name, _ = devices.fastest(["cpu", "cpu:0"], fake_steps({"cpu": 0.001, "cpu:0": 0.004}))
    assert name == "cpu"


def test_auto_resolves_to_the_cpu_outside_training() -> None:
    assert devices.resolve_device("auto") == torch.device("cpu")


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=TIME_COLUMNS)


def test_auto_measures_records_and_leaves_the_numbers_alone(tmp_path, monkeypatch) -> None:
    """With two devices auto times both (here two names for the CPU), records the times,
    and the run's numbers equal a device=cpu run: the measuring model is built under a
    forked RNG, so the run's own initialisation is untouched."""
    auto_device._AUTO_CHOICES.clear()
    plain = tmp_path / "plain"
    run_experiment(compose_config([*TINY, "device=cpu"]), plain, [])
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cpu:0"])
    auto = tmp_path / "auto"
    assert run_experiment(compose_config([*TINY, "device=auto"]), auto, []) == 0
    info = json.loads((auto / "run.json").read_text())
    assert set(info["device_step_s"]) == {"cpu", "cpu:0"}
    assert info["device"] in info["device_step_s"]
    pd.testing.assert_frame_equal(metrics(plain), metrics(auto))


def test_a_run_resumed_on_another_device_records_it(tmp_path, monkeypatch, capsys) -> None:
    run_dir = tmp_path / "run"
    run_experiment(compose_config([*TINY, "device=auto"]), run_dir, [])
    assert json.loads((run_dir / "run.json").read_text())["devices"] == [
        {"device": "cpu", "from_epoch": 1}
    ]
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu:0"])  # "another machine"
    resumed = compose_config([*TINY[1:], "train.epochs=2", "device=auto", f"resume={run_dir}"])
    assert run_experiment(resumed, run_dir, []) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["devices"] == [
        {"device": "cpu", "from_epoch": 1},
        {"device": "cpu:0", "from_epoch": 2},
    ]
    assert "continues on cpu:0; it ran on cpu from epoch 1" in capsys.readouterr().err


def test_resume_may_change_the_device(tmp_path: Path) -> None:
    from fake_records import write_record

    from nodecli.train.resume import resume_overrides

    run_dir = tmp_path / "run"
    write_record(run_dir, 2, ["device=cpu"])
    assert resume_overrides(str(run_dir), ["device=auto", "device.threads=2"])[:2] == [
        "device=auto",
        "device.threads=2",
    ]


def test_checkpoints_leave_the_cuda_generator_alone(tmp_path, monkeypatch) -> None:
    """Training never draws from the CUDA generator: saving it started CUDA for CPU runs
    and made resume fail with an IndexError when fewer GPUs were visible."""

    def refuse():
        raise AssertionError("the CUDA RNG state was read")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", refuse)
    model = torch.nn.Linear(2, 2)
    claim_folder(tmp_path, "test")
    save_training_state(tmp_path, 1, model, make_optimizer(model, 1e-3), torch.Generator())
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    release_folder(tmp_path)
    assert "cuda_rng" not in state


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"triton": None}, "needs the triton package"),
        ({"compiler": None}, "needs a C compiler"),
        ({"capability": (6, 1)}, "needs compute capability 7.0 or newer; Old GPU has 6.1"),
    ],
)
def test_compiled_on_cuda_checks_the_machine_first(monkeypatch, patch, expected) -> None:
    import importlib.util
    import shutil

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (object() if patch.get("triton", 1) else None)
            if name == "triton"
            else real_find_spec(name, *a)
        ),
    )
    monkeypatch.setattr(shutil, "which", lambda c: None if "compiler" in patch else "/bin/cc")
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda: patch.get("capability", (9, 0))
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Old GPU")
    with pytest.raises(ConfigError, match=expected) as info:
        devices.check_compiled_on("cuda", "compiled")
    assert len(str(info.value).splitlines()) == 1
    devices.check_compiled_on("cuda", "module")  # only the compiled style needs them
    devices.check_compiled_on("cpu", "compiled")


# ---- on a GPU ------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("style", LAYER_STYLES)
@pytest.mark.parametrize("sensealg", list(METHODS))
def test_train_every_method_and_style_on_cuda(cli, tmp_path, sensealg, style) -> None:
    result = cli(
        "train", *TINY, "device=cuda", f"sensealg={sensealg}", f"layer_style={style}", gpu=True
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["device"].startswith("cuda") and info["status"] == "completed"
    assert pd.read_csv(run_dir / "metrics.csv")["peak_memory_bytes"].iloc[0] > 0


@pytest.mark.cuda
@pytest.mark.slow
def test_gradcheck_on_cuda(cli, tmp_path) -> None:
    result = cli(
        "gradcheck",
        "device=cuda",
        "--max-rel-error=1e-3",
        "--repeats=1",
        "--out",
        str(tmp_path / "g"),
        gpu=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "g" / "gradcheck.json").read_text())
    assert report["device"].startswith("cuda")
    assert {row["sensealg"] for row in report["methods"]} == set(METHODS)


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_across_devices(cli, tmp_path, first, then) -> None:
    """GPU→CPU and CPU→GPU: resume continues, records the move, and ends where an
    uninterrupted run ends (accuracies to a digit: CPU and CUDA round differently)."""
    assert cli("train", *TINY[1:], "train.epochs=2", f"device={first}", gpu=True).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    assert (
        cli("train", f"resume={run_dir}", "train.epochs=4", f"device={then}", gpu=True).returncode
        == 0
    )
    info = json.loads((run_dir / "run.json").read_text())
    assert [d["device"].split(":")[0] for d in info["devices"]] == [first, then]
    assert info["devices"][1]["from_epoch"] == 3
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 4


@pytest.mark.cuda
def test_a_solver_error_in_a_backward_solve_on_cuda_is_one_line(tmp_path) -> None:
    """The adjoint's backward solve runs on autograd's worker thread: its SolverError
    must still reach the run record as one line (max_steps too small for the backward)."""
    cfg = compose_config(
        [
            *TINY,
            "device=cuda",
            "sensealg=adjoint",
            "sensealg.adjoint_rtol=1e-12",
            "sensealg.adjoint_atol=1e-12",
            "solver.max_steps=20",
        ]
    )
    assert run_experiment(cfg, tmp_path / "run", []) == 1
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "failed" and len(info["error"].splitlines()) == 1
    assert "max_steps" in info["error"] or "steps" in info["error"]


@pytest.mark.cuda
@pytest.mark.parametrize("sensealg", list(METHODS))
def test_cpu_and_cuda_gradients_agree(sensealg) -> None:
    from nodecli.experiment.model import build_model
    from nodecli.train.loop import solve_spec

    cfg = compose_config([f"sensealg={sensealg}", "solver.rtol=1e-6", "solver.atol=1e-6"])
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(64) % 10
    grads = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model("module", solve_spec(cfg)).to(device)
        torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
        grads[device] = torch.cat([p.grad.reshape(-1).cpu() for p in model.parameters()])
    error = (grads["cuda"] - grads["cpu"]).norm() / grads["cpu"].norm()
    assert error < 1e-4


def test_a_stored_config_lets_resume_change_the_device(tmp_path: Path) -> None:
    """check_stored_config compared device.name and device.threads with the stored
    config, so `resume=… device=cpu` (which README allows) was refused."""
    from fake_records import write_record

    from nodecli.train.resume import check_resumable

    run_dir = tmp_path / "run"
    write_record(run_dir, 2, [*TINY[1:], "train.epochs=2", "device=auto"])
    moved = compose_config(
        [*TINY[1:], "train.epochs=3", "device=cpu", "device.threads=2", f"resume={run_dir}"]
    )
    assert check_resumable(run_dir, moved, str(run_dir)) == 2
    changed = compose_config([*TINY[1:], "train.epochs=3", "seed=5", f"resume={run_dir}"])
    with pytest.raises(ConfigError, match="says seed="):
        check_resumable(run_dir, changed, str(run_dir))
