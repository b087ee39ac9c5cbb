"""What `nodecli report` prints, whatever the terminal: the comparison's columns in the
order a study reads them at every width, typed JSON, consistent precision, any output
encoding, integers of any size, and a hint when a sweep has not run all its jobs."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from report_records import make_run, report, three_by_two

from nodecli import cli


def with_memory(root: Path) -> None:
    """three_by_two's sensealgs and seeds, with a peak-memory column."""
    for sensealg, factor in {"direct": 1.0, "adjoint": 0.5, "gauss": 1.0}.items():
        for seed in (0, 1):
            times = tuple(t * factor + 0.1 * seed for t in (2.0, 1.0, 1.2, 0.8))
            make_run(root, f"{sensealg}-{seed}", sensealg, seed, times=times, memory=2e6 + seed)


def first_table(out: str) -> str:
    """The first of the tables a narrow terminal splits the report into (all of it if one)."""
    return out.split("nodecli report (2/")[0]


@pytest.mark.parametrize("columns", ["80", "100", "200", None])
def test_the_epoch_time_and_the_speed_up_lead_at_every_width(
    tmp_path: Path, capsys, monkeypatch, columns: str | None
) -> None:
    with_memory(tmp_path)
    if columns is None:  # a pipe: capsys is no terminal
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    code, out, err = report(capsys, str(tmp_path))
    assert code == 0, err
    first = first_table(out)
    assert "epoch time" in first and "speed-up" in first and "1.91×" in first, out
    header = next(line for line in out.splitlines() if "epoch time" in line)
    assert header.index("epoch time") < header.index("speed-up")
    for later in ("final test acc", "peak memory"):  # when they share the first table
        if later in header:
            assert header.index("speed-up") < header.index(later)


@pytest.mark.parametrize("fmt", ["markdown", "csv"])
def test_every_format_puts_the_speed_up_next_to_the_epoch_time(
    tmp_path: Path, capsys, fmt: str
) -> None:
    with_memory(tmp_path)
    code, out, err = report(capsys, str(tmp_path), "--format", fmt)
    assert code == 0, err
    header = out.splitlines()[0]
    time_at, speedup_at = (
        header.index("epoch time" if fmt == "markdown" else "epoch_time_s_std"),
        (header.index("speed-up" if fmt == "markdown" else "speedup")),
    )
    assert time_at < speedup_at < header.index("test acc" if fmt == "markdown" else "test_acc")
    assert speedup_at < header.index("memory")


def test_json_numbers_are_numbers_and_seeds_a_list(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    code, out, err = report(capsys, str(tmp_path), "--format", "json", "--by", "sensealg,train.lr")
    assert code == 0, err
    groups = json.loads(out)["groups"]
    for group in groups:
        assert group["epochs"] == 4 and group["epochs_min"] == 4
        assert group["seeds"] == [0, 1]
        assert group["train.lr"] == 0.001 and isinstance(group["sensealg"], str)
        assert isinstance(group["runs"], int) and isinstance(group["epoch_time_s_mean"], float)


def test_a_huge_integer_leaves_every_integer_an_integer(tmp_path: Path, capsys) -> None:
    for i, batch in enumerate((128, 64, 2**63)):
        run = make_run(tmp_path, f"r{i}", seed=i)
        config = run / ".hydra" / "config.yaml"
        config.write_text(
            config.read_text().replace("train:\n", f"train:\n  batch_size: {batch}\n")
        )
    code, out, err = report(capsys, str(tmp_path), "--format", "markdown")
    assert code == 0, err
    labels = [line.split("|")[1].strip() for line in out.splitlines()[2:5]]
    assert labels == ["64", "128", str(2**63)]
    code, out, err = report(capsys, str(tmp_path), "--format", "json")
    assert [g["train.batch_size"] for g in json.loads(out)["groups"]] == [64, 128, 2**63]


def test_epochs_view_gives_the_std_its_means_decimals(tmp_path: Path, capsys) -> None:
    three_by_two(tmp_path)
    code, out, err = report(capsys, str(tmp_path), "--epochs", "--format", "markdown")
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| [1/4]")]
    assert rows
    for row in rows:
        for cell in row.split("|")[3:]:
            if "±" in cell:
                mean, std = (part.strip() for part in cell.split("±"))
                assert len(mean.partition(".")[2]) == len(std.partition(".")[2]), row


@pytest.mark.parametrize("extra", [[], ["--epochs"]])
@pytest.mark.parametrize("fmt", ["rich", "markdown", "csv", "json", "latex"])
def test_an_ascii_stdout_gets_ascii_stand_ins_in_every_format(
    tmp_path: Path, monkeypatch, fmt: str, extra: list[str]
) -> None:
    three_by_two(tmp_path)
    make_run(tmp_path, "odd", "direct", 5, solver="'é·x'")  # a config value, any script
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(tmp_path), "--format", fmt, *extra])
    stdout.flush()
    text = raw.getvalue().decode("ascii")
    assert exit_info.value.code == 0
    if fmt in ("rich", "markdown"):
        assert "+/-" in text
    assert "\\xe9" in text or "\\u00e9" in text  # escaped (JSON its own way), not lost


def test_a_sweep_with_jobs_not_started_says_its_plan_has_more(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    three_by_two(sweep)
    (sweep / "sweep.json").write_text(json.dumps({"n_jobs": 8, "jobs": []}))
    code, out, err = report(capsys, str(tmp_path))
    assert code == 0, err
    assert f"{sweep}: 6 of the 8 jobs its sweep.json plans have a run record" in err
    (sweep / "sweep.json").write_text(json.dumps({"n_jobs": 6, "jobs": []}))
    code, out, err = report(capsys, str(sweep))
    assert code == 0 and "sweep.json" not in err, err
