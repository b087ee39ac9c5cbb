"""Paths that need quoting: every printed hint pastes back into the shell and Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, run_main

TRICKY_PATHS = ["/tmp/plain", "my runs/x", "ünï/x", "sweeps/0_seed=1,sensealg=adjoint", "it's"]


@pytest.mark.parametrize("path", TRICKY_PATHS)
def test_path_hints_paste_back_into_the_shell_and_hydra(path: str) -> None:
    """What the shell hands nodecli after the user pastes a hint is read by Hydra as PATH."""
    import shlex

    from nodecli.config.overrides import override_value, parse_overrides, shell_override

    (word,) = shlex.split(shell_override("resume", path))
    assert override_value(word) == path
    assert not parse_overrides([word])[0].is_sweep_override()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "hydra.run.dir=ünï/x"], """e.g. 'hydra.run.dir="ünï/x"'"""),
        (["train", "dataset.root=ü b"], """e.g. 'dataset.root="ü b"'"""),
        (["sweep", "sweep.resume=~/sweep"], "neither reads nor expands '~'"),
        (["train", "resume=~/run"], "neither reads nor expands '~'"),
        (["train", "resume=s/0_seed=1,train.epochs=1"], """e.g. 'resume="s/0_seed=1,train"""),
        (["sweep", "sweep.resume=a=b"], """e.g. 'sweep.resume="a=b"'"""),
    ],
)
def test_an_unquoted_path_hydra_cannot_read_is_one_line_saying_how_to_quote(
    tmp_path: Path, monkeypatch, capsys, args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main([*args, *TINY], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Lexer" not in err
    assert list(tmp_path.iterdir()) == []


def stop_at_first_epoch(monkeypatch) -> None:
    """Training stops as on Ctrl-C, before its first epoch."""
    from nodecli.signals import StopRequested
    from nodecli.train import loop as train

    def stop(*args, **kwargs):
        raise StopRequested(2)

    monkeypatch.setattr(train, "_train", stop)


def test_an_interrupted_run_prints_a_quoted_resume_command(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    stop_at_first_epoch(monkeypatch)
    code, err = run_main(["train", "hydra.run.dir=my runs/x", *TINY], capsys)
    assert code == 130
    assert f"""nodecli train 'resume="{tmp_path}/my runs/x"'""" in err, err


def test_an_interrupted_sweep_job_points_only_to_the_sweeps_resume(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from nodecli import cli

    monkeypatch.chdir(tmp_path)
    stop_at_first_epoch(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "seed=0,1", "hydra.sweep.dir=my sweep", *TINY])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 130, out + err
    assert "nodecli train" not in out + err
    hint = """nodecli sweep 'sweep.resume="my sweep"'"""
    assert hint in err and f"continue with `{hint}`" in out
