"""`nodecli gradcheck`'s command line: names what is wrong, says the dtype it checks in,
and never replaces an earlier record in its --out folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodecli import cli
from nodecli.config.compose import compose_config
from nodecli.errors import ConfigError


def gradcheck(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["gradcheck", *args])
    return exit_info.value.code, capsys.readouterr().err


def test_a_bad_method_name_is_named_with_the_valid_ones(capsys) -> None:
    code, err = gradcheck(capsys, "--methods", "adjoint,nope")
    assert code == 2
    assert "unknown method 'nope'" in err
    assert "valid: direct, adjoint, checkpoint, interpolating, gauss" in err
    code, err = gradcheck(capsys, "--methods", "adjont")
    assert code == 2 and "did you mean 'adjoint'?" in err


def test_a_float_out_of_range_names_the_dtype_gradcheck_runs_in(capsys) -> None:
    code, err = gradcheck(capsys, "--dtype=float64", "solver.rtol=1e-320")
    assert code == 2
    assert "gradcheck --dtype=float64 runs in float64" in err and "float32" not in err
    code, err = gradcheck(capsys, "solver.rtol=1e-300")
    assert code == 2 and "gradcheck --dtype=float32 runs in float32" in err


def test_float64_accepts_what_only_float32_cannot_hold() -> None:
    config = compose_config(["solver.rtol=1e-300"], dtype="float64", user="gradcheck")
    assert config.solver.rtol == 1e-300
    with pytest.raises(ConfigError, match="training runs in float32"):
        compose_config(["solver.rtol=1e-300"])


@pytest.mark.parametrize("content", ["gradcheck.json", "notes.txt"])
def test_out_over_a_folder_holding_files_is_refused_and_keeps_them(
    tmp_path: Path, capsys, content: str
) -> None:
    out = tmp_path / "gc"
    out.mkdir()
    (out / content).write_text("earlier record\n")
    code, err = gradcheck(capsys, "--methods", "direct", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert f"--out {out} is not empty (it holds {content})" in err
    assert (out / content).read_text() == "earlier record\n"
    assert sorted(p.name for p in out.iterdir()) == [content]
