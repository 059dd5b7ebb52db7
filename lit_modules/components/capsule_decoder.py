"""The reconstruction decoder of Sabour et al. (2017): an MLP on the masked class capsules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mask_capsules(capsules: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Zero every class capsule but the one of ``labels``, then flatten.

    Args:
        capsules: class capsule vectors.
        labels: the class whose capsule is kept, per sample.

    Returns:
        The masked capsules, flattened per sample.

    Shape:
        - capsules: ``(B, C, D)``
        - labels: ``(B,)``
        - output: ``(B, C * D)``
    """
    mask = F.one_hot(labels.long(), capsules.shape[1]).to(capsules.dtype)
    return (capsules * mask.unsqueeze(-1)).flatten(1)


class CapsuleDecoder(nn.Module):
    """Three fully connected layers, ReLU, ReLU, sigmoid, from the masked class capsules to pixels.

    The sigmoid output matches inputs scaled to [0, 1]; the paper's sizes are 512 and 1024 hidden
    units and 784 outputs for 28×28 MNIST.

    Args:
        num_classes: class capsules.
        capsule_dim: dimension of each class capsule.
        output_shape: shape of one image, e.g. ``(1, 28, 28)``.
        hidden: sizes of the two hidden layers.

    Shape:
        - capsules: ``(B, num_classes, capsule_dim)``, labels ``(B,)``
        - output: ``(B, *output_shape)``
    """

    def __init__(
        self, num_classes: int, capsule_dim: int, output_shape: tuple[int, ...], hidden: tuple[int, int] = (512, 1024)
    ) -> None:
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.net = nn.Sequential(
            nn.Linear(num_classes * capsule_dim, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[1], math.prod(self.output_shape)),
            nn.Sigmoid(),
        )

    def forward(self, capsules: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(mask_capsules(capsules, labels)).view(-1, *self.output_shape)


def reconstruction_sse(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel errors per image, mean over the batch (the paper's reconstruction loss).

    Shape:
        - reconstruction, images: ``(B, ...)``
        - output: scalar
    """
    return (reconstruction - images).pow(2).flatten(1).sum(dim=1).mean()
