"""The package map is checked, not drawn: import-linter's contracts in pyproject.toml keep
imports running one way (cli → commands → config → experiment → backends → ode; every
command → record), and the top level stays small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a layer importing upwards / across: the torch parts reading the record layout
        ("ode/settings.py", "from nodecli.record.layout import RUN_FILE", "nodecli.record.layout"),
        # a command using Hydra itself instead of going through nodecli.config
        ("sweep/table.py", "from hydra.core.plugins import Plugins", "hydra"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, line, broken) -> None:
    shutil.copytree(ROOT / "nodecli", tmp_path / "nodecli")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    source = tmp_path / "nodecli" / module
    source.write_text(source.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    name = "nodecli." + module.removesuffix(".py").replace("/", ".")
    assert f"{name} -> {broken} (l." in result.stdout, result.stdout


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


MAX_FLOORS = 7
MAX_MODULE_LINES = 450  # the Butcher tableaus (data) aside


def import_graph() -> dict[str, set[str]]:
    """nodecli's modules and what each imports (module level and in functions; grimp is
    import-linter's own graph builder)."""
    import grimp

    graph = grimp.build_graph("nodecli", cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_module_imports_itself_round_a_cycle() -> None:
    edges = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in edges[module]:
            if target != "nodecli":  # the package face imports nothing
                visit(target, [*path, module])
        done.add(module)

    for module in edges:
        visit(module, [])


def test_imports_between_groups_run_at_most_seven_floors_deep() -> None:
    """A group is a package (nodecli.train) or a top-level module (nodecli.cli)."""
    groups: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        group = ".".join(module.split(".")[:2])
        groups.setdefault(group, set()).update(
            ".".join(t.split(".")[:2]) for t in targets if t != "nodecli"
        )
    floors: dict[str, int] = {}

    def floor(group: str) -> int:
        if group not in floors:
            below = [floor(g) for g in groups.get(group, ()) if g != group]
            floors[group] = 1 + max(below, default=0)
        return floors[group]

    deepest = max(groups, key=floor)
    assert floor(deepest) <= MAX_FLOORS, (deepest, floors)


def test_no_module_is_over_450_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "nodecli").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES and p.stem != "tableaus"
    }
    assert long == {}
