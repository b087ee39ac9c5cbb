"""nodecli's Adam performs torch.optim.Adam's update and shares its checkpoint layout."""

from __future__ import annotations

import torch

from nodecli.experiment.optim import Adam


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).requires_grad_() for shape in ((20, 784), (20,), (7,))]


def _grads(step: int, params: list[torch.Tensor]) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_matches_torch_adam() -> None:
    ours, theirs = _params(), _params()
    opt_a, opt_b = Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2)
    for step in range(5):
        _grads(step, ours)
        _grads(step, theirs)
        opt_a.step()
        opt_b.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_state_dict_round_trips_with_torch_adam() -> None:
    ours, theirs = _params(), _params()
    opt_a, opt_b = Adam(ours), torch.optim.Adam(theirs)
    for step in range(3):
        _grads(step, ours)
        _grads(step, theirs)
        opt_a.step()
        opt_b.step()
    resumed = Adam(_params())
    resumed.load_state_dict(opt_b.state_dict())  # torch's checkpoint into ours
    assert resumed.steps == 3
    for m, s in zip(resumed.exp_avg, opt_b.state_dict()["state"].values(), strict=True):
        torch.testing.assert_close(m, s["exp_avg"])
    back = torch.optim.Adam(_params())
    back.load_state_dict(opt_a.state_dict())  # ours into torch's
    assert float(back.state_dict()["state"][0]["step"]) == 3.0
