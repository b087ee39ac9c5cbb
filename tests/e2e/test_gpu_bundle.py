"""The prepared device check (scripts/gpu_check.sh, issue 23): its scripts parse, and on a
machine without CUDA it skips every CUDA part with a line, still measures the CPU parts
and writes the results with the columns docs/gpu.md describes. Building the bundle needs
the network and minutes, so it is left to `make gpu-bundle` / `make gpu-dry-run`."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
SHELL_SCRIPTS = ["gpu_bundle.sh", "gpu_check.sh", "gpu_dry_run.sh"]


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPTS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_the_device_check_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_check_refuses_an_unknown_phase_in_one_line(tmp_path: Path, capsys) -> None:
    """In process: the script's exit code is main's SystemExit (sys.exit(main()))."""
    with pytest.raises(SystemExit) as exit_info:
        load_check().main(
            ["--out", str(tmp_path / "o"), "--work", str(tmp_path / "w"), "--phases", "matrix,nope"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown phase(s) nope; valid: tests, matrix, syncs, scale" in err


def test_host_reads_are_counted_per_batch_without_cuda(tmp_path: Path) -> None:
    """Without CUDA the syncs row keeps the host reads and marks the CUDA count as not
    measured; direct reads the host 3 times a batch (tests/test_syncs.py's target) plus
    the epoch's one loss read."""
    check = load_check()
    results = check.Results(tmp_path, {})
    check.count_syncs(results, "direct", False, time.monotonic() + 60)
    (row,) = results.syncs
    assert row["batches"] == 11
    assert float(row["host_reads_per_batch"]) <= 3 + 1 / 11
    assert row["cuda_syncs"] == "not measured (no CUDA)"
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| " + " | ".join(check.SYNC_COLUMNS) + " |" in table


@pytest.mark.slow
def test_without_cuda_the_pair_keeps_its_cpu_run_and_skips_cuda_with_a_line(
    tmp_path: Path,
) -> None:
    check = load_check()
    results = check.Results(tmp_path / "out", {"mode": "test"})
    tiny = ["data.n=200", "train.batch_size=64"]
    pairs = [("direct", "module")]
    deadline = time.monotonic() + 120
    check.run_pairs(results, tmp_path, "matrix", "reference", pairs, 2, tiny, False, deadline)
    assert not results.failed
    with (tmp_path / "out" / "gpu_check.csv").open() as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == check.RUN_COLUMNS
        cuda, cpu = list(reader)
    assert (cuda["device"], cuda["status"]) == ("cuda", "skipped: no CUDA")
    assert cuda["first_epoch_s"] == cuda["warm_epoch_s"] == ""
    assert (cpu["device"], cpu["status"], cpu["epochs"]) == ("cpu", "completed", "2")
    assert float(cpu["first_epoch_s"]) > 0 and float(cpu["warm_epoch_s"]) > 0
    assert 0 <= float(cpu["test_acc"]) <= 100
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| direct | module | not measured (skipped: no CUDA) |" in table
    assert "- matrix-cuda-direct-module: no CUDA on this machine" in table
