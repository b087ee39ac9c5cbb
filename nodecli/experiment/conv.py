"""model=conv: the convolutional ODE-Net of torchdiffeq's MNIST example.

torchdiffeq's examples/odenet_mnist.py: convolutions downsample the 28×28 digit to a
WIDTH-channel 6×6 feature map; an ODE block integrates a field of two 3×3 convolutions,
each after GroupNorm and ReLU, with time as an extra input channel (`ConcatConv2d`); then
GroupNorm, ReLU, average pooling and a linear head. WIDTH is 64 there (model.hidden here).
Weights keep PyTorch's default initialisation, as in the example.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: The feature map's height and width after downsampling a 28×28 digit.
FEATURE_SIZE = 6


def norm(width: int) -> nn.GroupNorm:
    """GroupNorm with min(32, WIDTH) groups (the example's `norm`)."""
    return nn.GroupNorm(min(32, width), width)


class ConcatConv2d(nn.Module):
    """A convolution whose input has t appended as one constant channel."""

    def __init__(self, dim_in: int, dim_out: int, kernel: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, kernel, padding=padding)

    def forward(self, t: float | Tensor, x: Tensor) -> Tensor:
        tt = torch.ones_like(x[:, :1]) * t
        return self.conv(torch.cat([tt, x], 1))


class ConvField(nn.Module):
    """dy/dt = norm(conv(t, relu(norm(conv(t, relu(norm(y))))))) on a (B, WIDTH, H, W) state."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.norm1 = norm(width)
        self.conv1 = ConcatConv2d(width, width)
        self.norm2 = norm(width)
        self.conv2 = ConcatConv2d(width, width)
        self.norm3 = norm(width)

    def forward(self, t: float | Tensor, y: Tensor) -> Tensor:
        out = self.conv1(t, torch.relu(self.norm1(y)))
        out = self.conv2(t, torch.relu(self.norm2(out)))
        return self.norm3(out)


def downsampling(width: int) -> nn.Sequential:
    """1×28×28 → WIDTH×6×6: the example's `downsampling_layers`."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, 1),
        norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
        norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
    )


class ConvODENet(nn.Module):
    """Downsampling → ODE block (a ConvField) → norm, ReLU, pooling, Linear(WIDTH→10)."""

    def __init__(self, ode: nn.Module, width: int = 64, n_classes: int = 10) -> None:
        """ODE is the ODE block (nodecli.experiment.model.ODEBlock) model.py builds."""
        super().__init__()
        self.downsampling = downsampling(width)
        self.ode = ode
        self.head = nn.Sequential(
            norm(width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(width, n_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.ode(self.downsampling(x.reshape(-1, 1, 28, 28))))
