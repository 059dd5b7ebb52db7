"""The convolutional front end of Su Jianlin's capsule network (kexue.fm/archives/4819), and its reading as capsules.

Four 3×3 "valid" convolutions with ReLU and one 2×2 average pooling, no flattening: the network is
fully convolutional, so it accepts any image at least :data:`MIN_SIDE` pixels on a side (a 28×28
image gives an 8×8 map, a 56×28 stack of two images a 22×8 map). Su's capsule network reads
every position's feature vector as one input capsule; his CNN for the overlap test pools the same
map globally.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_SIDE = 14  # (side - 4) // 2 - 4 >= 1


class SuConvFrontEnd(nn.Module):
    """Conv ``c1`` → conv ``c1`` → 2×2 average pool → conv ``c2`` → conv ``c2`` (3×3, valid, ReLU).

    Args:
        in_channels: channels of the images.
        channels: ``(c1, c2)``, Su's ``(64, 128)``.

    Shape:
        - input: ``(B, in_channels, H, W)`` with ``H, W >= 14``
        - output: ``(B, c2, (H - 4) // 2 - 4, (W - 4) // 2 - 4)``
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, int] = (64, 128)) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"channels must be (c1, c2), got {tuple(channels)}")
        c1, c2 = channels
        self.out_channels = c2
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c1, 3),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
            nn.Conv2d(c1, c2, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c2, 3),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ValueError(
                f"Su's front end needs images of at least {MIN_SIDE}×{MIN_SIDE}, got {tuple(x.shape[-2:])}"
            )
        return self.layers(x)


def positions_as_capsules(features: torch.Tensor) -> torch.Tensor:
    """Every grid position's channel vector as one capsule, row-major: capsule ``n = y * W + x``.

    Shape:
        - features: ``(B, C, H, W)``
        - output: ``(B, H * W, C)``
    """
    return features.flatten(2).transpose(1, 2)


class PositionCapsules(nn.Module):
    """:func:`positions_as_capsules` as a layer (the capsules are not squashed, as in Su's network)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return positions_as_capsules(features)
