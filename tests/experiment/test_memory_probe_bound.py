"""The CPU memory probe never profiles a step too long to profile: the profiler keeps an
event per operation, and a long model.t1 took the machine's memory (21 GB) in the probe."""

from __future__ import annotations

import math

import torch

import nodecli.experiment.memory as memory
from nodecli.experiment.data import load_dataset
from nodecli.experiment.model import build_model
from nodecli.ode.methods import method_for
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec


def probe_once() -> memory.StepMemory:
    torch.manual_seed(0)
    model = build_model("module", SolveSpec(SolverSettings(), method_for("direct")))
    data = load_dataset("mnist_bundled", 100, 0.1, 0)
    return memory.MemoryProbe()(model, data, 16, torch.device("cpu"))


def test_a_step_over_the_evaluation_bound_has_no_peak_but_its_held_bytes(monkeypatch) -> None:
    assert not math.isnan(probe_once().peak_bytes)
    monkeypatch.setattr(memory, "PROFILE_MAX_EVALUATIONS", 1)
    result = probe_once()
    assert math.isnan(result.peak_bytes) and result.hold_bytes > 0
