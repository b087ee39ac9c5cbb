"""The classifier: layer styles agree, init matches the reference, NFE counters count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nodecli.experiment.model import build_model
from nodecli.ode.methods import method_for
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec


def make(style: str, sensealg: str = "direct", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(style, SolveSpec(sensealg=method_for(sensealg)))


def test_glorot_uniform_weights_and_zero_biases() -> None:
    model = make("module")
    for name, p in model.named_parameters():
        if p.dim() == 2:
            bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
            assert p.abs().max() <= bound and p.abs().max() > 0.5 * bound, name
        else:
            assert torch.count_nonzero(p) == 0, name
    assert sum(p.numel() for p in model.parameters()) == 15700 + 210 + 110 + 220 + 210


@pytest.mark.parametrize("sensealg", ["direct", "adjoint"])
def test_layer_styles_give_identical_numbers(sensealg: str) -> None:
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    results = []
    for style in ("module", "functional"):
        model = make(style, sensealg)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    for ga, gb in zip(grads_a, grads_b, strict=False):
        torch.testing.assert_close(ga, gb, rtol=0, atol=0)


def test_direct_and_adjoint_gradients_agree() -> None:
    x = torch.rand(32, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (32,))
    grads = []
    for sensealg in ("direct", "adjoint"):
        torch.manual_seed(0)
        spec = SolveSpec(SolverSettings(rtol=1e-8, atol=1e-8), method_for(sensealg))
        model = build_model("module", spec).double()
        F.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    rel = (grads[0] - grads[1]).norm() / grads[0].norm()
    assert rel < 1e-5


def test_nfe_counts_forward_and_backward() -> None:
    model = make("module")
    x = torch.rand(8, 1, 28, 28)
    before = model.ode.nfe
    out = model(x)
    forward = model.ode.nfe - before
    assert forward > 0
    out.sum().backward()
    backward = model.ode.nfe - before - forward
    assert 0 < backward <= forward  # direct: one VJP per recorded evaluation


def test_accuracy_evaluates_without_recording_a_graph() -> None:
    """Evaluation needs no autograd graph: recording one made every epoch's two accuracy
    solves slower and hold memory for nothing."""
    from nodecli.train.loop import accuracy

    model = build_model("module", SolveSpec())
    grad_enabled = []
    model.register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    accuracy(model, torch.rand(16, 1, 28, 28), torch.zeros(16, dtype=torch.long))
    assert grad_enabled == [False]
