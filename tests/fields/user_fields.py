"""Vector fields as a user would write them for model=custom (docs/models.md).

Not a test module: the tests put this folder on PYTHONPATH and name these classes in
`model.field._target_=user_fields.<Class>`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TimeMLP(nn.Module):
    """dy/dt = W2 tanh(W1 y + t·v) + b: depends on t, y and its parameters."""

    def __init__(self, latent: int, width: int = 16) -> None:
        super().__init__()
        self.l1 = nn.Linear(latent, width)
        self.time = nn.Parameter(torch.randn(width) * 0.1)
        self.l2 = nn.Linear(width, latent)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.l2(torch.tanh(self.l1(y) + t * self.time))


class FrozenMLP(TimeMLP):
    """TimeMLP with its first layer frozen (requires_grad=False)."""

    def __init__(self, latent: int, width: int = 16) -> None:
        super().__init__(latent, width)
        self.l1.requires_grad_(False)


class Decay(nn.Module):
    """dy/dt = -y: no parameter at all."""

    autonomous = True

    def __init__(self, latent: int) -> None:
        super().__init__()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -y


class WrongShape(TimeMLP):
    """Returns one column instead of y's shape."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return super().forward(t, y)[:, :1]


class WrongDtype(TimeMLP):
    """Returns float64 for a float32 state."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return super().forward(t, y).double()


class Broken(TimeMLP):
    """Raises in forward."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


class NotAModule:
    """A class with the right call signature that is not an nn.Module."""

    def __init__(self, latent: int) -> None:
        self.latent = latent

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        return -y


def make_field(latent: int) -> nn.Module:
    """A factory function rather than a class."""
    return TimeMLP(latent)


class Drift(nn.Module):
    """dy/dt = w: a trainable parameter, but independent of y."""

    def __init__(self, latent: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(latent) * 0.1)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.w.expand_as(y)


class NotFinite(TimeMLP):
    """Returns NaN everywhere (a division by zero in a user's field)."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return super().forward(t, y) * float("nan")
