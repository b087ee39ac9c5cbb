"""A non-editable install ships conf/ inside the wheel and runs from any directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import cpu_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_conf_and_runs_from_elsewhere(tmp_path: Path) -> None:
    # Build from a copy so the build leaves no egg-info/build folders in the checkout.
    source = tmp_path / "source"
    skip = (".venv", ".git", "outputs", "data", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("nodecli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nodecli/conf/config.yaml" in names and "nodecli/conf/sensealg/adjoint.yaml" in names
    assert "hydra_plugins/nodecli_sweeper/__init__.py" in names  # hydra/sweeper=nodecli

    # A fresh venv that borrows the heavy dependencies (torch, hydra …) from this one
    # through a .pth file, so the test needs no network and installs in seconds. This
    # venv's pip installs into it (pip --python): ensurepip would take seconds more.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps"]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Without PYTHONPATH: a checkout on it (as in a worktree) would shadow the wheel.
    clean = {k: v for k, v in cpu_env().items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(env_dir / "bin" / "nodecli"), "train", "train.epochs=1", "data.n=100"],
        cwd=elsewhere,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "[1/1]" in result.stdout
    assert list(elsewhere.glob("outputs/runs/*/*/run.json"))
    # A sweep runs through hydra/sweeper=nodecli, found in the installed hydra_plugins.
    swept = subprocess.run(
        [str(env_dir / "bin" / "nodecli"), "sweep", "seed=0,1", "train.epochs=1", "data.n=100"],
        cwd=elsewhere,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "all 2 job(s) completed" in swept.stdout
    located = subprocess.run(
        [str(py), "-c", "import nodecli.config.tree as h; print(h.conf_dir())"],
        cwd=elsewhere,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert located.startswith(site)


def test_every_config_group_ships_in_the_wheel() -> None:
    """pyproject.toml lists conf/'s groups as packages one by one: a new group left out
    installs nodecli without it (`Could not find 'model/mlp'` from any directory)."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    groups = {f"nodecli.conf.{p.name}" for p in (ROOT / "conf").iterdir() if p.is_dir()}
    assert groups - {"nodecli.conf.__pycache__"} <= listed
