"""Shared helpers: run the `nodecli` command as a user would, in a scratch directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

# One torch thread per test process: pytest-xdist already runs one worker per core, and a
# pool of N threads in each worker (and in each `nodecli` it starts) only oversubscribes
# the cores (measured: 14 % less CPU for tests/experiment/test_models.py + tests/ode/
# test_odeint.py). Set before any test imports torch; nodecli's own default is
# device.threads=1 too, so no test depends on the machine's core count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The files that take longest (wall seconds under `make test`, from `pytest --durations=0`:
# the SLURM cluster's waits, the sweeps, the races and kills, every docs example, the report
# figures, the signal tests). `make test` hands whole files to its two xdist workers in
# collection order (--dist loadfile --no-loadscope-reorder), so these go first and the two
# workers finish together; the rest follow, the files with most tests first. Started
# last, test_slurm.py kept one worker busy 38 s after the other had finished.
LONGEST_FILES = (
    "tests/e2e/test_slurm.py",
    "tests/sweep/test_sweep.py",
    "tests/docs/test_docs.py",
    "tests/e2e/test_faults.py",
    "tests/report/test_report_layout.py",
    "tests/e2e/test_reliability.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (see LONGEST_FILES); a file's own tests keep their order."""
    files = [item.nodeid.split("::")[0] for item in items]
    counts = Counter(files)

    def rank(index: int) -> tuple[int, int, str]:
        name = files[index]
        first = LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
        return first, -counts[name], name

    order = sorted(range(len(items)), key=rank)  # stable: same-file tests stay in order
    items[:] = [items[i] for i in order]


TINY = ["train.epochs=1", "data.n=200", "train.batch_size=64"]


def nodecli_command() -> list[str]:
    script = Path(sys.executable).with_name("nodecli")
    if script.exists():
        return [str(script)]
    found = shutil.which("nodecli")
    return [found] if found else [sys.executable, "-m", "nodecli.cli"]


def cpu_env(**extra: str) -> dict[str, str]:
    """This process's environment with the GPUs hidden (CUDA_VISIBLE_DEVICES=""): a
    `nodecli` started with it trains on the CPU under device=auto, on any machine."""
    return {**os.environ, **extra, "CUDA_VISIBLE_DEVICES": ""}


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, gpu: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """Run nodecli in CWD. Without GPU=True the GPUs are hidden (CUDA_VISIBLE_DEVICES=""),
    so device=auto is the CPU: only the CUDA tests (marked `cuda`) train on a GPU."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **kwargs.pop("env", {})}
    if not gpu:
        env = cpu_env(**env)
    return subprocess.run(
        [*nodecli_command(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/runs/*/*/run.json"))


@pytest.fixture
def cli(tmp_path: Path):
    """Call as cli('train', 'seed=1') → CompletedProcess, run inside tmp_path."""

    def call(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(list(args), tmp_path, **kwargs)

    return call


@pytest.fixture
def cli_here(tmp_path: Path, monkeypatch, capsys):
    """The in-process twin of `cli`: cli_here('train', 'seed=1') → CompletedProcess, from
    `nodecli.cli.main` run in this process inside tmp_path. For what needs no process of
    its own (no signal, pipe, race or start-up): seconds faster, and it counts for coverage."""
    from nodecli import cli as command

    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> subprocess.CompletedProcess:
        with pytest.raises(SystemExit) as exit_info:
            command.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["nodecli", *args], int(exit_info.value.code), out, err)

    return call


def run_here(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`run_cli`'s in-process twin for module-scoped fixtures (no tmp_path, monkeypatch or
    capsys there): `nodecli ARGS` run in this process inside CWD, on the CPU, COLUMNS=200.
    Its folder claims are released after, as its process would have ended."""
    import contextlib
    import io

    from nodecli import cli as command
    from nodecli.record.ownership import CLAIM_FILE, release_folder

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv("COLUMNS", "200")
        patch.setattr("nodecli.experiment.device.available_devices", lambda: ["cpu"])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as exit_info:
                command.main(list(args))
    for folder in [p.parent for p in cwd.rglob(CLAIM_FILE)]:
        release_folder(folder)
    code = int(exit_info.value.code)
    return subprocess.CompletedProcess(["nodecli", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def cpu_unless_cuda_test(request, monkeypatch) -> None:
    """In process, device=auto sees only the CPU, except in tests marked `cuda`; those
    are skipped where no GPU is present."""
    if request.node.get_closest_marker("cuda"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
        return
    monkeypatch.setattr("nodecli.experiment.device.available_devices", lambda: ["cpu"])


def run_main(args: list[str], capsys) -> tuple[int, str]:
    """`nodecli ARGS` in process: (exit code, stderr)."""
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    return int(exit_info.value.code), capsys.readouterr().err
