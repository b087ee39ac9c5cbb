"""`nodecli train model=custom` as a user runs it: their field module on PYTHONPATH (one
process shows that; the rest runs `nodecli` in this one, tests/fields on sys.path)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY, run_cli, run_dirs

FIELDS = Path(__file__).resolve().parents[1] / "fields"


def with_fields() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(FIELDS), path) if p)}


@pytest.mark.slow
def test_train_model_custom_trains_a_users_field_and_resumes_it(
    tmp_path: Path, cli_here, monkeypatch
) -> None:
    args = [
        "train",
        *TINY,
        "model=custom",
        "model.field._target_=user_fields.TimeMLP",
        "+model.field.width=8",
        "sensealg=adjoint",
    ]
    done = run_cli(args, tmp_path, env=with_fields())
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_dirs(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["model"]["field_target"] == "user_fields.TimeMLP"
    assert info["model"]["field_parameters"] == 20 * 8 + 8 + 8 + 8 * 20 + 20
    monkeypatch.syspath_prepend(str(FIELDS))
    resumed = cli_here("train", f"resume={run_dir}", "train.epochs=2")
    assert resumed.returncode == 0, resumed.stderr
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 3


@pytest.mark.parametrize(
    "target", ["user_fields.Missing", "user_fields.NotAModule", "user_fields.WrongShape"]
)
def test_a_bad_target_is_one_line_exit_2_and_no_record(
    tmp_path: Path, target: str, cli_here, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(FIELDS))
    done = cli_here("train", *TINY, "model=custom", f"model.field._target_={target}")
    assert done.returncode == 2
    assert done.stderr.startswith("nodecli: error: model.field")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "outputs").exists()
