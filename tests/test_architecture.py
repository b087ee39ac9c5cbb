"""The package map is checked, not drawn: import-linter's contracts in pyproject.toml keep
imports running one way (cli → commands → config → experiment → backends → ode; every
command → record), and the top level stays small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_LIMIT = 12


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports over the nodecli package found first on TREE's path."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_wrong_way_import_breaks_a_contract(tmp_path) -> None:
    shutil.copytree(ROOT / "nodecli", tmp_path / "nodecli")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    settings = tmp_path / "nodecli" / "ode" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom nodecli.record.layout import RUN_FILE\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "nodecli.ode.settings -> nodecli.record.layout" in result.stdout


def test_the_top_level_holds_only_the_shared_modules() -> None:
    modules = sorted(p.stem for p in (ROOT / "nodecli").glob("*.py") if p.stem != "__init__")
    assert len(modules) <= TOP_LEVEL_LIMIT, modules
    packages = sorted(p.parent.name for p in (ROOT / "nodecli").glob("*/__init__.py"))
    assert packages == [
        "backends",
        "config",
        "experiment",
        "ode",
        "record",
        "report",
        "sweep",
        "train",
    ]


def test_package_faces_import_nothing() -> None:
    """`import nodecli.X.Y` must not pay for X's siblings: start-up time of every command."""
    for init in (ROOT / "nodecli").rglob("__init__.py"):
        body = [
            line for line in init.read_text().splitlines() if line.startswith(("import", "from"))
        ]
        assert body == [], init
