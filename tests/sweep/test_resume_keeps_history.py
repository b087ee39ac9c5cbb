"""`sweep.resume` never rewrites history: a skipped job's files stay as they were, an
interrupted job continues from its last finished epoch, and a config that would differ
from the one the sweep planned (a default changed in conf/) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodecli import cli
from nodecli.signals import StopRequested

SWEEP = ["seed=0,1", "train.epochs=2", "data.n=200", "train.batch_size=64", "hydra.sweep.dir=sw"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".nodecli.lock"  # the claim, not the record
    }


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    return int(exit_info.value.code)


@pytest.fixture
def interrupted_sweep(tmp_path: Path, monkeypatch) -> Path:
    """sw/: job 0 completed, job 1 stopped by SIGINT after its first epoch."""
    import nodecli.train.loop as loop

    monkeypatch.chdir(tmp_path)
    original = loop.train_epoch

    def stop_in_job_1_epoch_2(model, optimizer, data, batch_size, generator, epoch, *a, **k):
        if epoch == 2 and generator.initial_seed() == 1:
            raise StopRequested(2)  # SIGINT
        return original(model, optimizer, data, batch_size, generator, epoch, *a, **k)

    monkeypatch.setattr(loop, "train_epoch", stop_in_job_1_epoch_2)
    assert run(["sweep", *SWEEP]) == 130
    monkeypatch.setattr(loop, "train_epoch", original)
    return tmp_path / "sw"


def job(sweep_dir: Path, num: int) -> Path:
    (found,) = sweep_dir.glob(f"{num}_*")
    return found


def test_resume_continues_an_interrupted_job_and_leaves_a_completed_one_untouched(
    interrupted_sweep: Path, capsys
) -> None:
    done, stopped = job(interrupted_sweep, 0), job(interrupted_sweep, 1)
    assert json.loads((stopped / "run.json").read_text())["epochs_completed"] == 1
    before = snapshot(done)
    capsys.readouterr()
    assert run(["sweep", "sweep.resume=sw"]) == 0
    out = capsys.readouterr().out
    assert "continuing after epoch 1" in out, out
    assert snapshot(done) == before  # .hydra/config.yaml was rewritten
    info = json.loads((stopped / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_at"]
    assert not (stopped / "attempts").exists()  # epoch 1 was not trained again
    assert len((stopped / "metrics.csv").read_text().splitlines()) == 3


def test_resume_refuses_a_config_that_changed_since_the_sweep_planned_it(
    interrupted_sweep: Path, capsys
) -> None:
    plan_file = interrupted_sweep / "sweep.json"
    plan = json.loads(plan_file.read_text())
    plan["job_configs"][1]["train.lr"] = 0.5  # as if the default had been 0.5 then
    plan_file.write_text(json.dumps(plan))
    before = snapshot(interrupted_sweep)
    capsys.readouterr()
    assert run(["sweep", "sweep.resume=sw"]) == 2
    err = capsys.readouterr().err
    assert "job 1 was planned with train.lr=0.5" in err and len(err.splitlines()) == 1, err
    assert snapshot(interrupted_sweep) == before


def test_resume_of_a_sweep_without_stored_configs_compares_the_jobs_own(
    interrupted_sweep: Path, capsys
) -> None:
    plan_file = interrupted_sweep / "sweep.json"
    plan = json.loads(plan_file.read_text())
    del plan["job_configs"]
    plan_file.write_text(json.dumps(plan))
    config = job(interrupted_sweep, 0) / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.5"))
    capsys.readouterr()
    assert run(["sweep", "sweep.resume=sw"]) == 2
    err = capsys.readouterr().err
    assert "job 0 was planned with train.lr=0.5" in err, err
