"""What users and their files rely on stays where it was across the package move: the
library imports, a pickled SLURM job's function path, the Hydra surface (ConfigStore
names, resolvers, the sweeper plugin, conf/ groups) and a light `import nodecli`."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "backend",
    "dataset",
    "device",
    "layer_style",
    "logger",
    "model",
    "sensealg",
    "solver",
}


def test_report_library_api_keeps_its_import_path() -> None:
    from nodecli.report.aggregate import summarize as aggregate_summarize
    from nodecli.report.load import load_runs as load_load_runs
    from nodecli.summary import load_runs, summarize

    assert (load_runs, summarize) == (load_load_runs, aggregate_summarize)


def test_a_job_pickled_before_the_move_unpickles_to_the_sweep_task() -> None:
    """submitit pickles the task by reference: `nodecli.sweep_job.sweep_task`."""
    from nodecli.sweep.job import sweep_task

    old_pickle = b"cnodecli.sweep_job\nsweep_task\np0\n."
    assert pickle.loads(old_pickle) is sweep_task


def test_config_store_names_resolvers_and_sweeper_are_registered() -> None:
    from hydra.core.config_store import ConfigStore

    from nodecli.config.schema import register_schema
    from nodecli.config.tree import register_resolvers
    from nodecli.ode.methods import SENSEALGS, schema_name

    register_schema()
    register_resolvers()
    repo = ConfigStore.instance().repo
    assert "nodecli_schema.yaml" in repo
    assert "nodecli.yaml" in repo["hydra"]["sweeper"]
    for name in SENSEALGS:
        assert f"{schema_name(name)}.yaml" in repo
    assert OmegaConf.has_resolver("nodecli_uid") and OmegaConf.has_resolver("nodecli_job_dir")
    from hydra_plugins.nodecli_sweeper import ValidatedSweeper

    assert ValidatedSweeper.__module__ == "hydra_plugins.nodecli_sweeper"


def test_conf_groups_are_the_documented_ones() -> None:
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert groups == GROUPS


def test_import_nodecli_loads_neither_torch_nor_hydra() -> None:
    code = (
        "import sys, nodecli, nodecli.cli; "
        "print(sorted(m for m in ('torch', 'hydra', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
