"""Resume rules, in process: which records `nodecli train resume=` accepts, and that a refusal
changes nothing."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_main
from fake_records import DAMAGE, DEAD_PID, compose, now, snapshot, write_record

from nodecli.errors import ConfigError
from nodecli.record.ownership import claim_folder, release_folder
from nodecli.record.read import run_state
from nodecli.record.run import RunRecord
from nodecli.train.resume import (
    check_new_run_dir,
    check_resumable,
    resume_overrides,
    validate_record,
)


def test_resume_overrides_reuse_the_runs_own_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 2, ["seed=3", "train.epochs=2"])
    assert resume_overrides(str(run_dir), ["train.epochs=4"]) == [
        "seed=3",
        "train.epochs=4",
        f"resume={run_dir.resolve()}",
    ]
    with pytest.raises(ConfigError, match="only train.epochs=N"):
        resume_overrides(str(run_dir), ["sensealg=adjoint"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: 1\n", "overrides.yaml is damaged (not a list of overrides)"),  # was: override 'a'
        ("- 5\n", "overrides.yaml is damaged (not a list of overrides)"),
        ("", "overrides.yaml is damaged (not a list of overrides)"),
        (None, "not a run directory (no .hydra/overrides.yaml)"),  # said: no run.json
    ],
)
def test_resume_names_a_damaged_or_missing_overrides_file(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 1)
    path = run_dir / ".hydra" / "overrides.yaml"
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        resume_overrides(str(run_dir), [])


def test_resume_refuses_a_live_run_here_and_a_fresh_heartbeat_elsewhere(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 1)
    info = json.loads((run_dir / "run.json").read_text())
    for pid, host in ((os.getpid(), socket.gethostname()), (1, "another-host")):
        info.update(status="running", pid=pid, host=host, heartbeat_at=now())
        (run_dir / "run.json").write_text(json.dumps(info))
        with pytest.raises(ConfigError, match="still running"):
            resume_overrides(str(run_dir), [])
    # Another host, heartbeat older than the stale limit: dead, may be resumed.
    info["heartbeat_at"] = "2020-01-01T00:00:00+00:00"
    (run_dir / "run.json").write_text(json.dumps(info))
    assert run_state(info)[0] == "stale"
    resume_overrides(str(run_dir), [])


def test_run_state_is_one_rule_for_pid_and_heartbeat() -> None:
    here = socket.gethostname()
    alive = {"status": "running", "pid": os.getpid(), "host": here, "heartbeat_at": now()}
    assert run_state(alive)[0] == "running"
    assert run_state({**alive, "pid": DEAD_PID})[0] == "stale"  # no such pid here
    assert run_state({**alive, "heartbeat_at": "2020-01-01T00:00:00+00:00"})[0] == "stale"
    assert run_state({**alive, "status": "completed"})[0] == "completed"


@pytest.mark.parametrize("damage, expected", DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_resume_of_a_damaged_record_is_refused_and_changes_nothing(
    tmp_path: Path, damage, expected
) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    config = compose([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
    assert validate_record(run_dir, config) == 2  # intact: both epochs are kept
    damage(run_dir)
    before = snapshot(run_dir)
    with pytest.raises(ConfigError, match=expected) as info:
        validate_record(run_dir, config)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "weights_only=False" not in message
    assert snapshot(run_dir) == before


def edit_config(run_dir: Path, old: str, new: str) -> None:
    path = run_dir / ".hydra" / "config.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def truncate_config(run_dir: Path) -> None:
    path = run_dir / ".hydra" / "config.yaml"
    path.write_text(path.read_text()[:150])


CONFIG_DAMAGE = [
    (truncate_config, "config.yaml is damaged"),
    (lambda d: (d / ".hydra" / "config.yaml").write_text("train: [unclosed\n"), "invalid YAML"),
    (lambda d: (d / ".hydra" / "config.yaml").write_text("- a list\n"), "not a mapping"),
    (lambda d: (d / ".hydra" / "config.yaml").unlink(), "config.yaml is damaged (missing)"),
    (lambda d: edit_config(d, "lr: 0.001", "lr: abc"), "could not be converted to Float"),
    (lambda d: edit_config(d, "lr: 0.001", "lr: -1.0"), "train.lr=-1.0 is out of range"),
    (lambda d: edit_config(d, "lr: 0.001", "lr: 0.5"), "says train.lr=0.5, but the run's"),
    (lambda d: edit_config(d, "seed: 0", "seed: 0\nextra: 1"), "Key 'extra' not in 'Config'"),
]


@pytest.mark.parametrize("damage, expected", CONFIG_DAMAGE)
def test_resume_refuses_a_damaged_stored_config_and_changes_nothing(
    tmp_path: Path, monkeypatch, capsys, damage, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    damage(run_dir)
    before = snapshot(run_dir)
    code, err = run_main(["train", f"resume={run_dir}", "train.epochs=3"], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "the record was left as it is" in err
    assert snapshot(run_dir) == before
    release_folder(run_dir)


def test_resume_refuses_another_runs_checkpoint_of_the_same_shapes(tmp_path: Path) -> None:
    run_dir, other = tmp_path / "run", tmp_path / "other"
    write_record(run_dir, 2)
    write_record(other, 2, [*TINY[1:], "train.epochs=2", "seed=5"])  # same shapes
    config = compose([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
    (run_dir / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    before = snapshot(run_dir)
    with pytest.raises(ConfigError, match="checkpoint.pt belongs to another run"):
        validate_record(run_dir, config)
    assert snapshot(run_dir) == before
    # A checkpoint from before run ids were stored is judged on its shapes alone.
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del state["run_id"]
    torch.save(state, run_dir / "checkpoint.pt")
    assert validate_record(run_dir, config) == 2


def test_a_kill_between_metrics_and_checkpoint_is_resumable(tmp_path: Path) -> None:
    """metrics.csv and run.json one epoch ahead of checkpoint.pt: resume redoes that epoch."""
    run_dir = tmp_path / "run"
    write_record(run_dir, 1)
    claim_folder(run_dir, "test")
    record = RunRecord(run_dir)
    record.start("cpu", 1, [], resumed=True)
    record.info["pid"] = DEAD_PID  # then SIGKILL, before checkpoint.pt was saved
    record.append_epoch({"epoch": 2, "train_time_s": 0.1, "train_acc": 1.0, "test_acc": 1.0})
    release_folder(run_dir)
    config = compose([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
    assert validate_record(run_dir, config) == 1


def test_a_finished_run_resumes_only_to_train_further(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    done = compose([*TINY[1:], "train.epochs=2", f"resume={run_dir}"])
    with pytest.raises(ConfigError) as err:
        check_resumable(run_dir, done, str(run_dir))
    assert str(err.value) == (
        f"resume={run_dir}: the run already has 2 finished epoch(s); train.epochs=2 is not "
        "more than that; valid: train.epochs > 2 (e.g. train.epochs=3) to train further"
    )
    # Killed after its last checkpoint, before "completed": resumable, to complete it.
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "running", "pid": DEAD_PID}))
    assert check_resumable(run_dir, done, str(run_dir)) == 2
    # Fewer epochs than finished: refused whatever the status (it would "complete" at 2).
    fewer = compose([*TINY[1:], "train.epochs=1", f"resume={run_dir}"])
    with pytest.raises(ConfigError, match=r"has 2 finished epoch\(s\); train.epochs=1 is not"):
        check_resumable(run_dir, fewer, str(run_dir))


def test_a_new_run_needs_an_empty_folder(tmp_path: Path) -> None:
    check_new_run_dir(tmp_path / "absent", "hydra.run.dir")
    (tmp_path / "empty").mkdir()
    check_new_run_dir(tmp_path / "empty", "hydra.run.dir")
    users = tmp_path / "users"
    (users / ".hydra").mkdir(parents=True)
    (users / "metrics.csv").write_text("mine\n")
    with pytest.raises(ConfigError, match=r"is not empty .*\(metrics\.csv\)"):
        check_new_run_dir(users, "hydra.run.dir")
    (users / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run record"):
        check_new_run_dir(users, "hydra.run.dir")


def test_a_start_killed_before_its_first_record_write_can_start_again(tmp_path: Path) -> None:
    """A kill between Hydra writing .hydra/ and run.json left a folder that could be
    neither resumed nor reused; it holds nothing recorded, so a new run may start there,
    and resume says so."""
    aborted = tmp_path / "aborted"
    (aborted / ".hydra").mkdir(parents=True)
    (aborted / ".hydra" / "overrides.yaml").write_text("- train.epochs=2\n")
    check_new_run_dir(aborted, "hydra.run.dir")  # no error
    with pytest.raises(ConfigError, match=r"holds no run record yet .*hydra.run.dir="):
        resume_overrides(str(aborted), [])


def test_resume_deletes_a_stored_hydra_addition_and_keeps_the_rest() -> None:
    from nodecli.sweep.plan import merge_hydra_overrides

    stored = ["+hydra.job.env_set.FOO=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    merged = merge_hydra_overrides(stored, ["~hydra.job.env_set.FOO"], "resume")
    assert merged == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    merged = merge_hydra_overrides(stored, ["hydra/launcher=basic"], "resume")
    assert merged == ["+hydra.job.env_set.FOO=1", "hydra/launcher=basic"]


def test_an_ordinary_run_below_a_multirun_yaml_is_not_a_sweep_job(tmp_path: Path) -> None:
    from nodecli.train.resume import sweep_of

    (tmp_path / "multirun.yaml").write_text("{}\n")
    run = tmp_path / "runs" / "r1"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RUN\n")
    assert sweep_of(run) is None
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    assert sweep_of(run) == tmp_path


def test_a_hydra_folder_holding_other_files_is_not_a_killed_start(tmp_path: Path) -> None:
    """`.hydra/` alone was taken for a killed start whatever it held: a user's
    .hydra/config.yaml was written over."""
    killed = tmp_path / "killed" / ".hydra"
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text("seed: 0\n")
    (killed / "overrides.yaml").write_text("- seed=0\n")
    check_new_run_dir(killed.parent, "hydra.run.dir")
    users = tmp_path / "users" / ".hydra"
    users.mkdir(parents=True)
    (users / "config.yaml").write_text("precious\n")
    with pytest.raises(ConfigError, match=r"is not empty .*\(\.hydra\)"):
        check_new_run_dir(users.parent, "hydra.run.dir")
    (users / "config.yaml").write_text("seed: 0\n")
    (users / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match=r"is not empty .*\(\.hydra\)"):
        check_new_run_dir(users.parent, "hydra.run.dir")


def test_resume_says_why_the_model_cannot_be_rebuilt(tmp_path: Path) -> None:
    """A field module that vanished is named as such, and a changed model names the
    parameter whose shape differs (not only torch's 'Error(s) in loading state_dict')."""
    run_dir = tmp_path / "run"
    write_record(run_dir, 1)
    before = snapshot(run_dir)
    gone = compose([*TINY[1:], "train.epochs=2", "model=custom", "model.field._target_=gone_pkg.F"])
    with pytest.raises(ConfigError) as err:
        validate_record(run_dir, gone)
    assert str(err.value).startswith(f"resume={run_dir}: model.field._target_=gone_pkg.F does")
    assert "does not fit" not in str(err.value)
    wider = compose([*TINY[1:], "train.epochs=2", "model.hidden=11"])
    with pytest.raises(ConfigError, match=r"does not fit this run's model \(.*size mismatch"):
        validate_record(run_dir, wider)
    assert snapshot(run_dir) == before
