"""Records written by tests: a finished run's files, the ways a record gets damaged, and a
snapshot to prove a refusal changed nothing."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from conftest import TINY
from omegaconf import OmegaConf

from nodecli.config.compose import JobComposer
from nodecli.experiment.model import build_model
from nodecli.record.checkpoint import save_training_state
from nodecli.record.ownership import CLAIM_FILE, release_folder
from nodecli.record.run import RunRecord
from nodecli.train.loop import make_optimizer, solve_spec

DEAD_PID = 2**22 + 12345  # above Linux's largest pid: never a live process
# compose_config's Configs and errors, one Hydra composition per choice of groups: the
# records' configs (and the tests' resume configs) share it.
compose = JobComposer()


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def write_record(run_dir: Path, epochs: int, overrides: list[str] | None = None) -> None:
    """A real record as `nodecli train` leaves it: EPOCHS finished and checkpointed."""
    overrides = overrides if overrides is not None else [*TINY[1:], f"train.epochs={epochs}"]
    config = compose(overrides)
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
    model = build_model("module", solve_spec(compose(["model.hidden=7"])), 20, 7, 1.0)
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
