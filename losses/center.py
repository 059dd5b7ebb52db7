"""Center loss with learnable class centres (Wen et al. 2016, in Su Jianlin's form, kexue.fm/archives/4493)."""

from __future__ import annotations

import torch
from torch import nn


def center_distance(features: torch.Tensor, centers: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Squared distance of each feature vector to the centre of its class, mean over the batch.

    .. math::
        L_c = \frac1B \sum_b \lVert x_b - c_{y_b} \rVert^2

    Su's form (the total loss is ``CE + λ·L_c`` with λ = 0.2, the centres trained by the same
    optimiser); Wen et al. write :math:`\tfrac{\lambda}{2}` and update the centres by a separate rule.

    Shape:
        - features: ``(B, D)``
        - centers: ``(C, D)``
        - targets: ``(B,)`` integer
        - output: scalar
    """
    return (features - centers[targets.long()]).pow(2).sum(dim=1).mean()


class CenterLoss(nn.Module):
    """The centre term :math:`L_c` with the class centres as parameters (zeros at the start, as in Su's embedding).

    Because the centres are parameters of this module, a LightningModule that holds it trains them
    with its own optimiser, as the article does.

    Args:
        num_classes: number of classes :math:`C`.
        feature_dim: dimension :math:`D` of the features the centres live among.
    """

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(num_classes, feature_dim))

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """:func:`center_distance` to this module's centres.

        Shape:
            - features: ``(B, D)``
            - targets: ``(B,)`` integer
            - output: scalar
        """
        if features.shape[1] != self.centers.shape[1]:
            raise ValueError(f"features have {features.shape[1]} dimensions, the centres {self.centers.shape[1]}")
        return center_distance(features, self.centers, targets)
