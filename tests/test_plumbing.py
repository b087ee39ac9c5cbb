"""Config composition, resume rules, sweep planning, folder claims and file-system
errors, tested in process (Hydra's compose API, records written by the test): the logic
behind `nodecli train` / `nodecli sweep` without a subprocess per case."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from conftest import TINY
from omegaconf import OmegaConf

from nodecli.atomic import atomic_write_text
from nodecli.config.compose import compose_config
from nodecli.errors import ConfigError
from nodecli.experiment.model import build_model
from nodecli.record.checkpoint import save_training_state
from nodecli.record.ownership import CLAIM_FILE, ClaimError, ClaimLost, claim_folder, release_folder
from nodecli.record.read import run_state
from nodecli.record.run import RunRecord
from nodecli.sweep.plan import expand_jobs, plan_sweep
from nodecli.train.loop import make_optimizer, solve_spec
from nodecli.train.resume import (
    check_new_run_dir,
    check_resumable,
    resume_overrides,
    validate_record,
)

DEAD_PID = 2**22 + 12345  # above Linux's largest pid: never a live process


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def test_compose_applies_overrides_and_validates() -> None:
    config = compose_config(["sensealg=adjoint", "solver=dopri5", *TINY])
    assert config.sensealg.name == "adjoint" and config.solver.method == "dopri5"
    assert config.train.epochs == 1 and config.data.n == 200
    with pytest.raises(ConfigError, match="train.epochs=0 is out of range"):
        compose_config(["train.epochs=0"])
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        compose_config(["train.epoch=3"])


# --- resume rules --------------------------------------------------------------------


def write_record(run_dir: Path, epochs: int, overrides: list[str] | None = None) -> None:
    """A real record as `nodecli train` leaves it: EPOCHS finished and checkpointed."""
    overrides = overrides if overrides is not None else [*TINY[1:], f"train.epochs={epochs}"]
    config = compose_config(overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    record = RunRecord(run_dir)
    record.start("cpu", 1, overrides)
    torch.manual_seed(0)
    model = build_model(
        config.layer_style.name,
        solve_spec(config),
        config.model.latent,
        config.model.hidden,
        config.model.t1,
    )
    optimizer = make_optimizer(model, config.train.lr)
    for epoch in range(1, epochs + 1):
        record.append_epoch(
            {"epoch": epoch, "train_time_s": 0.1, "train_acc": 50.0, "test_acc": 40.0}
        )
        save_training_state(
            run_dir, epoch, model, optimizer, torch.Generator(), record.info["run_id"]
        )
    record.finish("completed")
    release_folder(run_dir)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != CLAIM_FILE
    }


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


def damage_missing_checkpoint(run_dir: Path) -> None:
    (run_dir / "checkpoint.pt").unlink()


def damage_truncated_checkpoint(run_dir: Path) -> None:
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def damage_foreign_checkpoint(run_dir: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, run_dir / "checkpoint.pt")


def damage_pickled_code(run_dir: Path) -> None:
    torch.save({"epoch": 2, "model": object()}, run_dir / "checkpoint.pt")


def damage_other_model(run_dir: Path) -> None:
    """A nodecli checkpoint, but of another model shape (model.hidden=7)."""
    model = build_model("module", solve_spec(compose_config(["model.hidden=7"])), 20, 7, 1.0)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["model"] = model.state_dict()
    torch.save(state, run_dir / "checkpoint.pt")


def damage_header_only_metrics(run_dir: Path) -> None:
    text = (run_dir / "metrics.csv").read_text()
    (run_dir / "metrics.csv").write_text(text.splitlines()[0] + "\n")


def damage_truncated_metrics(run_dir: Path) -> None:
    text = (run_dir / "metrics.csv").read_text()
    (run_dir / "metrics.csv").write_text(text[: len(text) - 12])


def damage_run_json(run_dir: Path) -> None:
    (run_dir / "run.json").write_text('{"status": "compl')


def damage_epochs_completed(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "epochs_completed": 5}))


def damage_epochs_completed_bool(run_dir: Path) -> None:
    """`true` is an int to Python: it read as 1 epoch ("True epoch(s)")."""
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "epochs_completed": True}))


DAMAGE = [
    (damage_missing_checkpoint, "inconsistent"),
    (damage_truncated_checkpoint, "damaged or not a nodecli checkpoint"),
    (damage_foreign_checkpoint, "not a nodecli checkpoint"),
    (damage_pickled_code, "damaged or not a nodecli checkpoint"),
    (damage_other_model, "does not fit this run's model"),
    (damage_header_only_metrics, "inconsistent"),
    (damage_truncated_metrics, "metrics.csv is damaged"),
    (damage_run_json, "run.json is damaged"),
    (damage_epochs_completed, "inconsistent"),
    (damage_epochs_completed_bool, "no valid epochs_completed"),
]


@pytest.mark.parametrize("damage, expected", DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_resume_of_a_damaged_record_is_refused_and_changes_nothing(
    tmp_path: Path, damage, expected
) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    config = compose_config([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
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
    config = compose_config([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
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
    config = compose_config([*TINY[1:], "train.epochs=3", f"resume={run_dir}"])
    assert validate_record(run_dir, config) == 1


def test_a_finished_run_resumes_only_to_train_further(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_record(run_dir, 2)
    done = compose_config([*TINY[1:], "train.epochs=2", f"resume={run_dir}"])
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
    fewer = compose_config([*TINY[1:], "train.epochs=1", f"resume={run_dir}"])
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


# --- folder claims -----------------------------------------------------------------------


def test_a_claimed_folder_is_refused_naming_its_owner(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    # Another process's claim: a lock on its own open file description, with its owner.
    (folder / CLAIM_FILE).write_text(
        json.dumps({"pid": 4242, "host": "elsewhere", "started_at": "t0", "token": "x"})
    )
    other = os.open(folder / CLAIM_FILE, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(ClaimError, match="in use by pid 4242 on elsewhere since t0"):
            claim_folder(folder, "test")
        with pytest.raises(ClaimError, match="in use by pid 4242"):  # a new run, before Hydra
            check_new_run_dir(folder, "hydra.run.dir")
    finally:
        os.close(other)  # the owner dies: its claim goes with it
    claim = claim_folder(folder, "test")
    assert claim_folder(folder, "again") is claim  # idempotent within one process
    release_folder(folder)


def test_a_writer_that_lost_its_folder_writes_nothing(tmp_path: Path) -> None:
    record = RunRecord(tmp_path / "run")
    record.start("cpu", 1, [])
    (tmp_path / "run" / CLAIM_FILE).unlink()  # e.g. the folder was cleaned up meanwhile
    before = (tmp_path / "run" / "run.json").read_bytes()
    with pytest.raises(ClaimLost):
        record.heartbeat()
    assert (tmp_path / "run" / "run.json").read_bytes() == before
    release_folder(tmp_path / "run")


def test_record_files_get_the_umask_default_mode(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "run.json", "{}\n")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == 0o666 & ~mask


# --- sweep planning ----------------------------------------------------------------------


def test_expand_jobs_in_hydras_order() -> None:
    assert expand_jobs(["seed=0,1", "train.epochs=1,2"]) == [
        ["seed=0", "train.epochs=1"],
        ["seed=0", "train.epochs=2"],
        ["seed=1", "train.epochs=1"],
        ["seed=1", "train.epochs=2"],
    ]
    assert expand_jobs([]) == [[]]
    with pytest.raises(ConfigError, match="has no jobs"):
        expand_jobs(["seed=range(0,0)"])


def test_plan_splits_job_hydra_and_resume_parts(tmp_path: Path) -> None:
    plan = plan_sweep(["seed=0,1", "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path / 's'}"])
    assert plan.jobs == [["seed=0"], ["seed=1"]] and plan.hydra_overrides == [
        "hydra/launcher=joblib"
    ]
    assert plan.sweep_dir == tmp_path / "s" and plan.dir_given and not plan.resume
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not empty"):
        plan_sweep(["seed=0,1", f"hydra.sweep.dir={tmp_path / 'mine'}"])


def test_job_folder_names_are_one_valid_file_name_each() -> None:
    from nodecli.config.tree import MAX_NAME_BYTES, job_dir_name

    assert job_dir_name(3, "seed=1,sensealg=adjoint") == "3_seed=1,sensealg=adjoint"  # Hydra's
    assert job_dir_name(0, "") == "0_"
    assert job_dir_name(1, "dataset.root=/data/x") == "1_dataset.root=_data_x"
    long = ",".join(f"key{i}=ü{'9' * 30}" for i in range(12))
    names = [job_dir_name(n, long) for n in (0, 1)] + [job_dir_name(0, long + "1")]
    assert len(set(names)) == 3 and names[0] == job_dir_name(0, long)  # unique, deterministic
    for name in names:
        assert len(name.encode()) <= MAX_NAME_BYTES and name.startswith(("0_key0=ü", "1_key0=ü"))
        name.encode().decode()  # cut at a character boundary


@pytest.mark.parametrize(
    "override, expected",
    [
        ("sweep.resume=null", "sweep.resume=null names no sweep directory; valid: sweep.resume="),
        ("sweep.resume=", "sweep.resume= names no sweep directory"),
        ("sweep.resme=x", "unknown sweep key 'sweep.resme'; did you mean 'sweep.resume'?"),
    ],
)
def test_sweep_keys_are_checked_in_one_line(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_sweep(["seed=0,1", override])
    assert str(err.value).startswith(expected) and "None" not in str(err.value)


def fake_sweep(sweep_dir: Path, job_args: list[str], sweep_json: str | None) -> None:
    """The folders a sweep leaves: multirun.yaml, numbered job folders, maybe sweep.json."""
    jobs = expand_jobs(job_args)
    sweep_dir.mkdir(parents=True)
    multirun = {
        "hydra": {"overrides": {"hydra": [f"hydra.sweep.dir={sweep_dir}"], "task": job_args}}
    }
    (sweep_dir / "multirun.yaml").write_text(OmegaConf.to_yaml(multirun))
    for num, job in enumerate(jobs):
        hydra_dir = sweep_dir / f"{num}_{','.join(sorted(job))}" / ".hydra"
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(job))
    if sweep_json is not None:
        (sweep_dir / "sweep.json").write_text(sweep_json)


@pytest.mark.parametrize(
    "sweep_json", [None, '{"job_overrides": [', '["a list"]', '{"job_overrides": "seed=0"}']
)
def test_resume_rebuilds_a_missing_or_damaged_plan_from_hydras_files(
    tmp_path: Path, sweep_json
) -> None:
    sweep_dir = tmp_path / "s"
    fake_sweep(sweep_dir, ["seed=0,1,2", "train.epochs=1"], sweep_json)
    plan = plan_sweep([f"sweep.resume={sweep_dir}"])
    assert plan.resume and len(plan.jobs) == 3
    assert plan.jobs[2] == ["seed=2", "train.epochs=1"]
    (sweep_dir / "multirun.yaml").unlink()
    if sweep_json is None or sweep_json != '{"job_overrides": "seed=0"}':
        with pytest.raises(ConfigError, match="rebuild the plan"):
            plan_sweep([f"sweep.resume={sweep_dir}"])


def test_resume_never_shrinks_a_plan_nor_reuses_a_folder(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "s"
    fake_sweep(sweep_dir, ["seed=0,1,2"], None)
    stored = {"job_overrides": ["seed=0,1"], "hydra_overrides": [], "n_jobs": 2}
    (sweep_dir / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="not in the plan"):
        plan_sweep([f"sweep.resume={sweep_dir}"])
    stored = {"job_overrides": ["seed=5,1,2"], "hydra_overrides": [], "n_jobs": 3}
    (sweep_dir / "sweep.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="disagree"):
        plan_sweep([f"sweep.resume={sweep_dir}"])
    with pytest.raises(ConfigError, match="resume it with the same overrides"):
        plan_sweep(["seed=0,1,2,3", f"sweep.resume={sweep_dir}"])


# --- file-system errors: one line, exit 2, before any work ---------------------------------


def run_main(args: list[str], capsys) -> tuple[int, str]:
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    return int(exit_info.value.code), capsys.readouterr().err


@pytest.mark.parametrize(
    "args, make, expected",
    [
        (["train", *TINY], lambda: Path("outputs").write_text(""), "cannot write outputs/runs"),
        (["train", *TINY, "hydra.run.dir=f/run"], lambda: Path("f").write_text(""), "f/run"),
        (["sweep", "seed=0,1", *TINY], lambda: Path("outputs").write_text(""), "outputs"),
        (["sweep", "seed=range(0,0)"], lambda: None, "has no jobs"),
        (
            ["gradcheck", "--methods", "direct", "--out", "g", *TINY],
            lambda: Path("g").write_text(""),
            "cannot write g",
        ),
    ],
    ids=["outputs-is-a-file", "run-dir-under-a-file", "sweep-outputs-file", "zero-jobs", "gc-out"],
)
def test_file_system_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch, capsys, args, make, expected
) -> None:
    monkeypatch.chdir(tmp_path)
    make()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = run_main(args, capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_read_only_folder_is_one_line_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    monkeypatch.chdir(tmp_path)
    tmp_path.chmod(0o555)
    try:
        code, err = run_main(["train", *TINY], capsys)
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and "Permission denied" in err and len(err.strip().splitlines()) == 1


def test_gradcheck_solver_failure_is_one_line_exit_1(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["gradcheck", "--methods", "direct", "--repeats", "1", "solver.max_steps=1", *TINY]
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    code, out = exit_info.value.code, capsys.readouterr().out
    assert code == 1 and "gradcheck failed" in out and "solver.max_steps" in out, out


def test_readme_gradcheck_example_with_a_key_direct_refuses(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The reference (direct) gets only the sensealg.* keys direct accepts, like each method."""
    monkeypatch.chdir(tmp_path)
    args = ["gradcheck", "model.t1=16", "--methods=adjoint,gauss", "sensealg.seminorm=true",
            "--repeats=1", "--out", "g", "data.n=200", "train.batch_size=8"]  # fmt: skip
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    report = json.loads((tmp_path / "g" / "gradcheck.json").read_text())
    assert [r["sensealg"] for r in report["methods"]] == ["adjoint", "gauss"]
    assert report["config"]["sensealg"] == {"name": "direct"}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--max-rel-error", "nan"], "--max-rel-error=nan is out of range"),
        (["--max-rel-error", "inf"], "--max-rel-error=inf is out of range"),
        (["--max-rel-error", "-1"], "--max-rel-error=-1.0 is out of range"),
        (["--ref-tol", "inf"], "--ref-tol=inf is out of range"),
        (["--methods", "direct", "sensealg.seminorm=true"], "applies to none of the checked"),
        (["sensealg.seminrm=true"], "did you mean 'sensealg.seminorm'"),
        (["sensealg=nope"], "sensealg=nope is not an option"),
        (["backend=torchdyn"], "backend=torchdyn is not used here"),
    ],
)
def test_gradcheck_refuses_values_that_cannot_work(
    tmp_path: Path, monkeypatch, capsys, args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["gradcheck", *args], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


# --- paths that need quoting ----------------------------------------------------------------

TRICKY_PATHS = ["/tmp/plain", "my runs/x", "ünï/x", "sweeps/0_seed=1,sensealg=adjoint", "it's"]


@pytest.mark.parametrize("path", TRICKY_PATHS)
def test_path_hints_paste_back_into_the_shell_and_hydra(path: str) -> None:
    """What the shell hands nodecli after the user pastes a hint is read by Hydra as PATH."""
    import shlex

    from nodecli.config.overrides import override_value, parse_overrides, shell_override

    (word,) = shlex.split(shell_override("resume", path))
    assert override_value(word) == path
    assert not parse_overrides([word])[0].is_sweep_override()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "hydra.run.dir=ünï/x"], """e.g. 'hydra.run.dir="ünï/x"'"""),
        (["train", "dataset.root=ü b"], """e.g. 'dataset.root="ü b"'"""),
        (["sweep", "sweep.resume=~/sweep"], "neither reads nor expands '~'"),
        (["train", "resume=~/run"], "neither reads nor expands '~'"),
        (["train", "resume=s/0_seed=1,train.epochs=1"], """e.g. 'resume="s/0_seed=1,train"""),
        (["sweep", "sweep.resume=a=b"], """e.g. 'sweep.resume="a=b"'"""),
    ],
)
def test_an_unquoted_path_hydra_cannot_read_is_one_line_saying_how_to_quote(
    tmp_path: Path, monkeypatch, capsys, args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main([*args, *TINY], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Lexer" not in err
    assert list(tmp_path.iterdir()) == []


def stop_at_first_epoch(monkeypatch) -> None:
    """Training stops as on Ctrl-C, before its first epoch."""
    from nodecli.signals import StopRequested
    from nodecli.train import loop as train

    def stop(*args, **kwargs):
        raise StopRequested(2)

    monkeypatch.setattr(train, "_train", stop)


def test_an_interrupted_run_prints_a_quoted_resume_command(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    stop_at_first_epoch(monkeypatch)
    code, err = run_main(["train", "hydra.run.dir=my runs/x", *TINY], capsys)
    assert code == 130
    assert f"""nodecli train 'resume="{tmp_path}/my runs/x"'""" in err, err


def test_an_interrupted_sweep_job_points_only_to_the_sweeps_resume(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    stop_at_first_epoch(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "seed=0,1", "hydra.sweep.dir=my sweep", *TINY])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 130, out + err
    assert "nodecli train" not in out + err
    hint = """nodecli sweep 'sweep.resume="my sweep"'"""
    assert hint in err and f"continue with `{hint}`" in out


def test_sigterm_to_a_sweep_is_passed_on_to_its_job_processes(tmp_path: Path) -> None:
    """SIGTERM to `nodecli sweep` alone killed it and left joblib/submitit jobs training,
    orphaned; ForwardStop passes it on to the child processes and records it."""
    import signal
    import subprocess
    import sys

    from nodecli.signals import ForwardStop, child_pids

    seen = tmp_path / "seen"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(seen)!r})"
            ".write_text('TERM'), sys.exit(0)))\n"
            "print('ready', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        assert child.pid in child_pids()
        with ForwardStop() as forward:
            os.kill(os.getpid(), signal.SIGTERM)
            assert child.wait(timeout=10) == 0
        assert forward.signum == signal.SIGTERM
        assert seen.read_text() == "TERM"
        assert signal.getsignal(signal.SIGTERM) is not forward._handle  # restored
    finally:
        child.kill()
        child.wait()


def test_a_damaged_multirun_yaml_is_not_called_missing(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    (sweep / "0_seed=0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{")
    with pytest.raises(ConfigError, match="there is no readable multirun.yaml to rebuild"):
        plan_sweep([f"sweep.resume={sweep}"])


def test_submitit_time_limit_signal_closes_the_record_before_its_handler_runs(
    tmp_path: Path, monkeypatch
) -> None:
    """submitit's SIGUSR2 handler (SLURM's time-limit / preemption warning) requeues the
    job and calls sys.exit at once: mid-batch, with the record left saying "running".
    The run now stops at the batch boundary, records `interrupted`, then runs it."""
    import signal

    from nodecli.record.read import read_run_json
    from nodecli.train.loop import Trackers, run_experiment

    calls: list[str] = []

    def submitit_like(signum: int, frame: object) -> None:
        calls.append(read_run_json(tmp_path / "run")["status"])
        raise SystemExit(-1)

    def log_epoch(self: Trackers, row: dict) -> None:
        if row["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(Trackers, "log_epoch", log_epoch)
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            run_experiment(compose_config([*TINY, "train.epochs=3"]), tmp_path / "run", [])
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # restored
    finally:
        signal.signal(signal.SIGUSR2, previous)
    info = read_run_json(tmp_path / "run")
    assert calls == ["interrupted"]  # the handler ran once, after the record was closed
    assert info["status"] == "interrupted" and info["epochs_completed"] == 1


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


def test_run_and_sweep_folders_resolve_as_hydra_resolves_them() -> None:
    from nodecli.config.compose import resolve_hydra_dir

    got = resolve_hydra_dir("hydra.run.dir", ["seed=3", "hydra.run.dir=runs/s_${seed}"])
    assert got == "runs/s_3"
    year = datetime.now().strftime("%Y")
    got = resolve_hydra_dir("hydra.sweep.dir", ["hydra.sweep.dir=sw_${now:%Y}"])
    assert got == f"sw_{year}"
    with pytest.raises(ConfigError, match=r"hydra.run.dir: cannot resolve it .*'nope'"):
        resolve_hydra_dir("hydra.run.dir", ["hydra.run.dir=${nope}"])
    plan = plan_sweep(["seed=0,1", "data.n=300", "hydra.sweep.dir=sw_${data.n}_${now:%Y}"])
    assert plan.sweep_dir == Path(f"sw_300_{year}")
