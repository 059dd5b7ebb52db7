"""Feature extractors for small images, and SimCLR's projection head.

Every backbone maps ``(B, C, H, W)`` images to ``(B, feature_dim)`` features through a global
average pool, so it accepts any image size its downsampling leaves at least one pixel of.
:data:`BACKBONES` is the one table of names; a model picks by name from it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn


class Backbone(nn.Module):
    """A feature extractor with a known output width.

    Args:
        body: maps images to ``(B, feature_dim)``.
        feature_dim: width of its output.
    """

    def __init__(self, body: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features.

        Shape:
            - images: ``(B, C, H, W)``
            - output: ``(B, feature_dim)``
        """
        return self.body(images)


def resnet18_small(in_channels: int) -> Backbone:
    """torchvision's ResNet-18, adapted to 32×32 images as SimCLR did for CIFAR-10.

    The ImageNet stem (7×7 stride-2 convolution, then a stride-2 max pool) would shrink a 32×32
    image to 8×8 before the first residual stage; a 3×3 stride-1 convolution without the pool
    keeps 32×32 there, so the last stage still sees 4×4. The classifier is dropped: the output is
    the 512-d average-pooled feature.
    """
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return Backbone(net, feature_dim)


def small_cnn(in_channels: int, channels: tuple[int, ...] = (32, 64, 128), convs_per_stage: int = 1) -> Backbone:
    """A plain CNN for 28×28 images: per stage ``convs_per_stage`` 3×3 convolutions with BatchNorm
    and ReLU, 2×2 max-pooling between stages, global average pooling at the end (``channels[-1]``
    features).

    With the defaults one 28×28 image costs about 15 MFLOPs forward, some 70× less than the
    ResNet-18 on 32×32 (1.1 GFLOPs), which is what makes a CPU-sized SimCLR run possible.
    """
    layers: list[nn.Module] = []
    previous = in_channels
    for i, width in enumerate(channels):
        if i:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 7×7 → 4×4 rather than 3×3
        for _ in range(convs_per_stage):
            conv = nn.Conv2d(previous, width, 3, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            previous = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Backbone(nn.Sequential(*layers), previous)


BACKBONES: dict[str, Callable[[int], Backbone]] = {"resnet18": resnet18_small, "small_cnn": small_cnn}


def build_backbone(name: str, in_channels: int) -> Backbone:
    """The backbone called ``name`` in :data:`BACKBONES`, for images with ``in_channels`` channels."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name](in_channels)


class ProjectionHead(nn.Sequential):
    """SimCLR's 2-layer MLP g(h) = W₂ ReLU(BN(W₁ h)) from features to the contrastive space.

    The loss is taken on g(h) and the features h before it are kept for downstream tasks: the
    head discards what the augmentations vary (colour, crop), which a classifier still needs.

    Shape:
        - input: ``(B, in_dim)``
        - output: ``(B, out_dim)``
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
