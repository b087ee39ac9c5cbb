"""The heartbeat keeps beating while a long batch runs, and stops before the owner
writes the record again."""

from __future__ import annotations

import time
from pathlib import Path

from nodecli.record.read import read_run_json
from nodecli.record.run import RunRecord


def test_the_heartbeat_beats_during_a_long_block_and_stops_after(tmp_path: Path) -> None:
    record = RunRecord(tmp_path / "run")
    record.start("cpu", 1, [])
    first = read_run_json(record.run_dir)["heartbeat_at"]
    with record.beating(interval_s=0.05):
        deadline = time.monotonic() + 10
        while read_run_json(record.run_dir)["heartbeat_at"] == first:
            assert time.monotonic() < deadline, "no heartbeat during the block"
            time.sleep(0.02)
    after = read_run_json(record.run_dir)["heartbeat_at"]
    time.sleep(0.2)
    assert read_run_json(record.run_dir)["heartbeat_at"] == after
