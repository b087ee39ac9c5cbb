"""Folder claims: one owner per record folder, a lost claim writes nothing."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest

from nodecli.atomic import atomic_write_text
from nodecli.record.ownership import CLAIM_FILE, ClaimError, ClaimLost, claim_folder, release_folder
from nodecli.record.run import RunRecord
from nodecli.train.resume import (
    check_new_run_dir,
)


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
