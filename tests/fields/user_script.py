"""A user's training script named as a field module: it parses the command line when
imported, so importing it under `nodecli train` exits (argparse: SystemExit(2))."""

from __future__ import annotations

import argparse

from torch import Tensor, nn

ARGS = argparse.ArgumentParser().parse_args()


class Field(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(latent, latent)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.l1(y)
