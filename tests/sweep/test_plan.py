"""Sweep planning, in process: job expansion in Hydra's order, job folder names, key checks,
and a plan that resume rebuilds but never shrinks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nodecli.errors import ConfigError
from nodecli.sweep.plan import expand_jobs, plan_sweep


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


def test_a_damaged_multirun_yaml_is_not_called_missing(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    (sweep / "0_seed=0" / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{")
    with pytest.raises(ConfigError, match="there is no readable multirun.yaml to rebuild"):
        plan_sweep([f"sweep.resume={sweep}"])


@pytest.mark.parametrize(
    "varying, expected",
    [
        (["data.split=0.5,0.001"], "leaves an empty train or test set"),
        (
            ["model=custom", "model.field._target_=user_fields.TimeMLP,user_fields.WrongShape"],
            "WrongShape.forward\\(t, y\\) returned shape",
        ),
    ],
)
def test_every_job_environment_is_checked_before_the_first_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, varying: list[str], expected: str
) -> None:
    from nodecli.sweep.plan import validate_jobs

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "fields"))

    plan = plan_sweep([*varying, "data.n=200", f"hydra.sweep.dir={tmp_path / 's'}"])
    with pytest.raises(ConfigError, match=expected):
        validate_jobs(plan)
    assert not (tmp_path / "s").exists()
