"""A user's training script named as a field module: it parses the command line when
imported, so importing it under `nodecli train` exits (argparse: SystemExit(2))."""

from __future__ import annotations

import argparse

from torch import Tensor, nn

# What `nodecli train …`'s own arguments do to such a script, whatever runs the tests.
ARGS = argparse.ArgumentParser().parse_args(["train", "model=custom"])


class Field(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.l1 = nn.Linear(latent, latent)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.l1(y)
