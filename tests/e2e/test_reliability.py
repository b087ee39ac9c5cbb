"""Faults leave an intact record with an honest status; runs resume exactly.

Signals and kills need a `nodecli` process (slow); the rest runs `nodecli` in this one."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY, cpu_env, nodecli_command, run_dirs

from nodecli.experiment.data import DataSplit
from nodecli.experiment.model import build_model
from nodecli.ode.sensitivity import SolveSpec
from nodecli.record.ownership import claim_folder, release_folder
from nodecli.train.loop import TrainingError, train_epoch

SAME = ["epoch", "train_loss", "train_acc", "test_acc", "nfe_forward", "nfe_backward"]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_diverging_loss_fails_at_once_naming_epoch_and_batch(cli_here, tmp_path: Path) -> None:
    result = cli_here("train", "train.lr=1e36", "data.n=300", "train.epochs=3")
    assert result.returncode == 1
    assert "loss became inf at epoch 1, batch 2" in result.stderr
    (run_dir,) = run_dirs(tmp_path)
    info = status(run_dir)
    assert info["status"] == "failed" and "epoch 1, batch 2" in info["error"]
    assert "Traceback" not in result.stderr


def test_nan_loss_is_caught_in_the_loop() -> None:
    torch.manual_seed(0)
    model = build_model("module", SolveSpec())
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    x = torch.rand(20, 1, 28, 28)
    data = DataSplit(x, torch.zeros(20, dtype=torch.long), x[:2], torch.zeros(2, dtype=torch.long))
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(TrainingError, match="loss became nan at epoch 3, batch 1"):
        train_epoch(model, optimizer, data, 8, torch.Generator(), 3, torch.device("cpu"))


@pytest.mark.parametrize("sensealg", ["direct", "adjoint"])
def test_solver_failure_names_the_settings_that_help(cli_here, tmp_path: Path, sensealg) -> None:
    result = cli_here("train", *TINY, f"sensealg={sensealg}", "solver.max_steps=1")
    assert result.returncode == 1
    assert "solver.max_steps" in result.stderr and "Traceback" not in result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert status(run_dir)["status"] == "failed"
    assert "solver.max_steps" in status(run_dir)["error"]


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*nodecli_command(), "train", *args],
        cwd=tmp_path,
        env=cpu_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epochs(tmp_path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_dir in run_dirs(tmp_path):
            metrics = run_dir / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) - 1 >= n:
                return run_dir
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("the run did not reach the expected epoch in time")


# Tight tolerances make each epoch slow enough (≈0.1 s) to signal the run mid-way.
SLOW = ["data.n=600", "solver.rtol=1e-7", "solver.atol=1e-7", "train.epochs=5"]


def interrupt(tmp_path: Path, signum: int) -> tuple[Path, subprocess.Popen, str]:
    proc = start_run(tmp_path, *SLOW)
    run_dir = wait_for_epochs(tmp_path, 1, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal landed: nothing to check
        pytest.skip("the run finished before the signal arrived")
    return run_dir, proc, stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path) -> None:
    run_dir, proc, stderr = interrupt(tmp_path, signal.SIGINT)
    assert proc.returncode == 130, stderr
    info = status(run_dir)
    assert info["status"] == "interrupted" and "SIGINT" in info["error"]
    assert "Traceback" not in stderr and "resume=" in stderr
    assert len(pd.read_csv(run_dir / "metrics.csv")) == info["epochs_completed"] >= 1


@pytest.mark.slow
def test_sigterm_then_resume_matches_straight_run(cli_here, tmp_path: Path) -> None:
    run_dir, proc, stderr = interrupt(tmp_path, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    info = status(run_dir)
    assert info["status"] == "interrupted" and "Traceback" not in stderr
    kept = pd.read_csv(run_dir / "metrics.csv")
    assert 1 <= len(kept) < 5 and info["epochs_completed"] == len(kept)

    # Only the signal needs a process: the resume and the straight run use this one.
    resumed = cli_here("train", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert status(run_dir)["status"] == "completed"
    straight = cli_here("train", *SLOW)
    assert straight.returncode == 0
    (other,) = [d for d in run_dirs(tmp_path) if d != run_dir]
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "metrics.csv")[SAME], pd.read_csv(other / "metrics.csv")[SAME]
    )


def test_extending_a_finished_run_equals_a_longer_run(cli_here, tmp_path: Path) -> None:
    assert cli_here("train", *TINY, "train.epochs=2").returncode == 0
    (first,) = run_dirs(tmp_path)
    extended = cli_here("train", f"resume={first}", "train.epochs=4")
    assert extended.returncode == 0, extended.stderr
    assert "[3/4]" in extended.stdout and "[1/4]" not in extended.stdout
    assert cli_here("train", *TINY, "train.epochs=4").returncode == 0
    (straight,) = [d for d in run_dirs(tmp_path) if d != first]
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "metrics.csv")[SAME], pd.read_csv(straight / "metrics.csv")[SAME]
    )


@pytest.mark.slow
def test_hard_kill_leaves_a_running_record_that_resumes(cli_here, tmp_path: Path) -> None:
    proc = start_run(tmp_path, *SLOW)
    run_dir = wait_for_epochs(tmp_path, 1, proc)
    proc.kill()
    proc.communicate()
    info = status(run_dir)  # still valid JSON: every write is atomic
    if info["status"] == "completed":
        pytest.skip("the run finished before the kill landed")
    assert info["status"] == "running" and info["heartbeat_at"] >= info["started_at"]
    pd.read_csv(run_dir / "metrics.csv")  # still a valid table
    resumed = cli_here("train", f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 5


@pytest.mark.parametrize(
    "make_target, expected",
    [
        (lambda root: root / "missing", "no such directory"),
        (lambda root: root, "is not a run directory"),
    ],
)
def test_resume_of_something_that_is_not_a_run(tmp_path, make_target, expected) -> None:
    from nodecli.errors import ConfigError
    from nodecli.train.resume import resume_overrides

    with pytest.raises(ConfigError, match=expected) as info:
        resume_overrides(str(make_target(tmp_path)), [])
    assert len(str(info.value).splitlines()) == 1


def test_resume_refuses_config_changes_and_finished_runs(cli_here, tmp_path: Path) -> None:
    assert cli_here("train", *TINY).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    before = (run_dir / "metrics.csv").read_text()
    changed = cli_here("train", f"resume={run_dir}", "sensealg=adjoint")
    assert changed.returncode == 2 and "only train.epochs=N" in changed.stderr
    finished = cli_here("train", f"resume={run_dir}")
    assert finished.returncode == 2 and "already has 1 finished epoch(s)" in finished.stderr
    assert (run_dir / "metrics.csv").read_text() == before


def test_new_run_never_overwrites_an_existing_record(cli_here, tmp_path: Path) -> None:
    assert cli_here("train", *TINY).returncode == 0
    (run_dir,) = run_dirs(tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = cli_here("train", *TINY, "seed=1", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and "already holds a run record" in result.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_loads_checkpoints_weights_only(tmp_path: Path, monkeypatch) -> None:
    from nodecli.record import checkpoint as resume

    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    torch.manual_seed(0)
    model = build_model("module", SolveSpec())
    optimizer = torch.optim.Adam(model.parameters())
    generator = torch.Generator().manual_seed(0)
    claim_folder(tmp_path, "test")
    try:
        resume.save_training_state(tmp_path, 3, model, optimizer, generator)
    finally:
        release_folder(tmp_path)
    monkeypatch.setattr(torch, "load", spy)
    assert resume.load_training_state(tmp_path, model, optimizer, generator) == 3
    assert seen.get("weights_only") is True


@pytest.mark.parametrize(
    "path",
    ["outputs/runs/2026-11-22/20-07-15-f85a7e", "/tmp/a b", "/tmp/~x", "/tmp/it's", "/tmp/a\\b"],
)
def test_run_and_sweep_paths_survive_hydras_override_grammar(path: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from nodecli.config.overrides import quote_override_value

    parsed = OverridesParser.create().parse_override(f"resume={quote_override_value(path)}")
    assert parsed.value() == path


def test_an_interpolated_run_dir_is_checked_where_it_resolves(cli_here, tmp_path: Path) -> None:
    """`hydra.run.dir=runs/s_${seed}` was checked and claimed under its literal name, so a
    second run wrote over the first one's record in runs/s_0."""
    assert cli_here("train", *TINY, "hydra.run.dir=runs/s_${seed}").returncode == 0
    run_dir = tmp_path / "runs" / "s_0"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    again = cli_here("train", *TINY, "train.lr=0.01", "hydra.run.dir=runs/s_${seed}")
    assert again.returncode == 2 and "runs/s_0 already holds a run record" in again.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["s_0"]
    swept = cli_here("sweep", *TINY, "seed=0,1", "hydra.sweep.dir=sw_${now:%Y}")
    assert swept.returncode == 0 and "all 2 job(s) completed" in swept.stdout, swept.stderr
    (sweep_dir,) = tmp_path.glob("sw_*")
    assert "$" not in sweep_dir.name and (sweep_dir / "sweep.json").is_file()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("devices", [5], "devices is not a list of {device, from_epoch}"),
        ("devices", [{}], "devices is not a list of {device, from_epoch}"),
        ("resumed_at", "yesterday", "resumed_at is not a list of strings"),
        ("status", 5, "status is 5, not a word"),
    ],
)
def test_a_misshapen_run_json_field_is_refused_before_resume_writes(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    """resume failed half-way on these (AttributeError, KeyError) after rewriting
    .hydra/overrides.yaml; the record said `completed` with the new epoch count."""
    from nodecli.record.read import read_run_json

    (tmp_path / "run.json").write_text(json.dumps({"status": "completed", field: value}))
    with pytest.raises(ValueError, match=re.escape(message)):
        read_run_json(tmp_path)
