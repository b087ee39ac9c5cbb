"""The run record: round-trips, atomic writes, resume-friendly appends."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from nodecli.atomic import atomic_write_text
from nodecli.record.layout import METRIC_COLUMNS
from nodecli.record.read import read_metrics, read_metrics_rows, read_run_json
from nodecli.record.run import RunRecord


def row(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "train_time_s": 0.1 * epoch,
        "train_loss": 1.0 / epoch,
        "train_acc": 50.0 + epoch,
        "test_acc": 40.0 + epoch,
        "nfe_forward": 154,
        "nfe_backward": 143,
        "peak_memory_bytes": float("nan"),
    }


def test_record_round_trip(tmp_path: Path) -> None:
    record = RunRecord(tmp_path / "run")
    record.start("cpu", 1, ["seed=3"])
    assert read_run_json(record.run_dir)["status"] == "running"
    for epoch in (1, 2):
        record.append_epoch(row(epoch))
    record.finish("completed")
    info = read_run_json(record.run_dir)
    assert info["status"] == "completed" and info["epochs_completed"] == 2
    assert info["overrides"] == ["seed=3"] and info["ended_at"] >= info["started_at"]
    table = pd.read_csv(record.metrics_path)
    assert tuple(table.columns) == METRIC_COLUMNS
    assert table["epoch"].tolist() == [1, 2]
    assert table["train_loss"].tolist() == [1.0, 0.5]


def test_resumed_record_keeps_rows_and_start_time(tmp_path: Path) -> None:
    first = RunRecord(tmp_path)
    first.start("cpu", 1, [])
    first.append_epoch(row(1))
    started = read_run_json(tmp_path)["started_at"]
    second = RunRecord(tmp_path)
    second.start("cpu", 1, [], resumed=True)
    second.append_epoch(row(2))
    assert [r["epoch"] for r in read_metrics_rows(tmp_path)] == ["1", "2"]
    info = read_run_json(tmp_path)
    assert info["started_at"] == started and len(info["resumed_at"]) == 1


def test_resume_keeps_columns_the_writer_does_not_know(tmp_path: Path) -> None:
    """An extra metrics.csv column (another version, a hand annotation) made the resumed
    run crash at start with run.json left 'running'; its cells must survive the rewrite."""
    first = RunRecord(tmp_path)
    first.start("cpu", 1, [])
    first.append_epoch(row(1))
    table = pd.read_csv(first.metrics_path)
    table["note"] = ["kept"]
    table.to_csv(first.metrics_path, index=False)
    second = RunRecord(tmp_path)
    second.start("cpu", 1, [], resumed=True)
    second.append_epoch(row(2))
    second.finish("completed")
    rows = read_metrics_rows(tmp_path)
    assert [(r["epoch"], r["note"]) for r in rows] == [("1", "kept"), ("2", "")]
    assert read_run_json(tmp_path)["status"] == "completed"


def test_a_resume_whose_first_write_fails_leaves_the_record_unchanged(
    tmp_path: Path, monkeypatch
) -> None:
    """A full disk as a resumed run starts: run.json used to be rewritten ('running',
    another resumed_at) before metrics.csv failed, so the record no longer said 'failed'."""
    first = RunRecord(tmp_path)
    first.start("cpu", 1, [])
    first.append_epoch(row(1))
    first.finish("failed", error="stopped")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def disk_full(self) -> None:
        raise OSError(28, "No space left on device", str(self.metrics_path))

    monkeypatch.setattr(RunRecord, "_write_metrics", disk_full)
    with pytest.raises(OSError):
        RunRecord(tmp_path).start("cpu", 1, [], resumed=True)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != ".nodecli.lock"} == {
        k: v for k, v in before.items() if k != ".nodecli.lock"
    }


def test_atomic_write_leaves_old_file_when_write_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "run.json"
    atomic_write_text(target, json.dumps({"status": "running"}))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "{half")
    assert json.loads(target.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left


def test_a_failed_atomic_write_names_the_record_file_not_its_temporary(
    tmp_path: Path, monkeypatch
) -> None:
    """A read-only folder failed in mkstemp naming `.metrics.csv.x1y2.tmp`."""
    target = tmp_path / "metrics.csv"

    def read_only(dir, prefix, suffix):  # noqa: A002 - mkstemp's own keyword
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "epoch\n")
    assert err.value.filename == str(target) and err.value.errno == errno.EROFS


def test_a_metrics_csv_that_is_a_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").mkdir()
    with pytest.raises(ValueError, match="a folder, not a file"):
        read_metrics(tmp_path)


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    record = RunRecord(tmp_path)
    record.start("cpu", 1, [])
    with pytest.raises(ValueError):
        record.finish("exploded")


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"status": "compl', "invalid JSON"),
        ("[1, 2]", "not a run record"),
        ('{"epochs_completed": 2}', "not a run record (no status)"),
    ],
)
def test_read_run_json_says_what_is_wrong_in_one_line(tmp_path: Path, text, expected) -> None:
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        read_run_json(tmp_path)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty file"),
        ("epoch,train_time_s\n1,0.1\n", "no column 'train_acc'"),
        ("epoch,train_time_s,train_acc,test_acc\n1,0.1,50\n", "truncated or malformed row"),
    ],
    ids=["empty", "header-cut", "row-cut"],
)
def test_read_metrics_refuses_a_damaged_table(tmp_path: Path, text, expected) -> None:
    (tmp_path / "metrics.csv").write_text(text)
    with pytest.raises(ValueError, match=expected):
        read_metrics(tmp_path)
    with pytest.raises(ValueError, match=expected):  # the writer's reader: same check
        read_metrics_rows(tmp_path)


def test_header_only_metrics_is_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(",".join(METRIC_COLUMNS) + "\n")
    assert read_metrics(tmp_path).empty and read_metrics_rows(tmp_path) == []
