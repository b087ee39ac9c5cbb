"""Every sensealg end to end through the CLI; `nodecli gradcheck`; memory columns. In
process: the installed command's start-up and exit codes are test_bad_input_before_torch's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, run_dirs

from nodecli.record.layout import METRIC_COLUMNS


@pytest.mark.parametrize("sensealg", ["adjoint", "checkpoint", "interpolating", "gauss"])
def test_tiny_training_run_per_method(cli_here, tmp_path: Path, sensealg: str) -> None:
    result = cli_here("train", *TINY, f"sensealg={sensealg}")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert tuple(metrics.columns) == METRIC_COLUMNS
    row = metrics.iloc[0]
    assert row["nfe_forward"] > 0 and row["nfe_backward"] > 0
    assert row["hold_memory_bytes"] > 0 and row["peak_memory_bytes"] > 0


def test_gradcheck_prints_table_and_writes_json(cli_here, tmp_path: Path) -> None:
    out = tmp_path / "gc"
    result = cli_here(
        "gradcheck",
        "data.n=200",
        "train.batch_size=16",
        "--repeats=1",
        f"--out={out}",
        "--max-rel-error=1e-3",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "gradcheck.json").read_text())
    names = [r["sensealg"] for r in report["methods"]]
    assert names == ["direct", "adjoint", "checkpoint", "interpolating", "gauss"]
    for row in report["methods"]:
        assert row["rel_l2_error"] < 1e-3
        assert row["nfe_forward"] > 0 and row["nfe_backward"] > 0
        assert row["hold_memory_bytes"] > 0
        assert row["sensealg"] in result.stdout
    assert report["reference"]["dtype"] == "float64"


def test_gradcheck_float64_default_record_dir(cli_here, tmp_path: Path) -> None:
    result = cli_here(
        "gradcheck",
        "--dtype=float64",
        "--methods=checkpoint,gauss",
        "--repeats=1",
        "data.n=200",
        "train.batch_size=8",
        "solver.rtol=1e-8",
        "solver.atol=1e-8",
    )
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("outputs/gradcheck/*/*/gradcheck.json")
    report = json.loads(path.read_text())
    assert all(r["rel_l2_error"] < 1e-5 for r in report["methods"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--methods=adjoint,nope"], "unknown method 'nope'; valid: direct, adjoint"),
        (["--bogus"], "unknown option --bogus"),
        (["train.epoch=3"], "did you mean 'train.epochs'"),
    ],
)
def test_gradcheck_bad_input_exits_2(
    cli_here, tmp_path: Path, args: list[str], expected: str
) -> None:
    result = cli_here("gradcheck", *args)
    assert result.returncode == 2
    assert expected in result.stderr and result.stderr.startswith("nodecli: error:")
    assert not (tmp_path / "outputs").exists()
