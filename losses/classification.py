"""A classifier's training loss chosen by name: cross-entropy, smoothed cross-entropy or center loss."""

from __future__ import annotations

import torch
from torch import nn

from losses.center import CenterLoss
from losses.smoothed_cross_entropy import smoothed_cross_entropy

CLASSIFICATION_LOSSES = ("cross_entropy", "smoothed_cross_entropy", "center")


def frequency_class_weights(ranks: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    r"""Class weights that favour frequent classes, normalised to mean 1.

    .. math::
        w_k = \Big(\frac{C - r_k}{C} + 1\Big)^3 \Big/ \frac1C \sum_j \Big(\frac{C - r_j}{C} + 1\Big)^3

    with :math:`r_k` the frequency rank of class :math:`k` (0 = most frequent). From rank 0 to rank
    :math:`C - 1` the raw weight falls from 8 to about 1 (Su's OCR, kexue.fm/archives/3774).

    Shape:
        - ranks: ``(C,)`` integer
        - output: ``(C,)`` float32
    """
    ranks = torch.as_tensor(ranks, dtype=torch.float32)
    c = float(num_classes if num_classes is not None else ranks.numel())
    raw = ((c - ranks) / c + 1.0) ** 3
    return raw / raw.mean()


class ClassificationLoss(nn.Module):
    """The loss a classifier trains with, selected by ``kind``; returns the total and its named terms.

    - ``cross_entropy``: :math:`-\\log p_y`;
    - ``smoothed_cross_entropy``: :func:`~losses.smoothed_cross_entropy.smoothed_cross_entropy`, ε = ``epsilon``;
    - ``center``: cross-entropy + ``center_weight`` × :class:`~losses.center.CenterLoss` on the
      features the logits were computed from (its centres are parameters of this module, so the
      model's optimiser trains them).

    Class weights, when given, scale each sample's (cross-entropy) term by its class's weight.

    Args:
        kind: one of :data:`CLASSIFICATION_LOSSES`.
        num_classes: classes :math:`C`.
        feature_dim: dimension of the features (needed by ``center`` only).
        epsilon: smoothing of ``smoothed_cross_entropy``.
        center_weight: λ of ``center``.
        class_weights: optional ``(C,)`` weights, kept as a buffer.
    """

    def __init__(
        self,
        kind: str = "cross_entropy",
        num_classes: int = 2,
        feature_dim: int | None = None,
        epsilon: float = 0.1,
        center_weight: float = 0.2,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if kind not in CLASSIFICATION_LOSSES:
            raise ValueError(f"loss must be one of {CLASSIFICATION_LOSSES}, got '{kind}'")
        if kind == "center" and not feature_dim:
            raise ValueError("the center loss needs the feature dimension of the classifier")
        self.kind, self.epsilon, self.center_weight = kind, epsilon, center_weight
        self.center = CenterLoss(num_classes, feature_dim) if kind == "center" else None
        self.register_buffer("class_weights", None if class_weights is None else torch.as_tensor(class_weights).float())

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total loss, named terms)``.

        Shape:
            - logits: ``(B, C)``
            - targets: ``(B,)`` integer
            - features: ``(B, D)``, required by ``center``
        """
        epsilon = self.epsilon if self.kind == "smoothed_cross_entropy" else 0.0
        ce = smoothed_cross_entropy(logits, targets, epsilon, self.class_weights)
        if self.center is None:
            return ce, {}
        if features is None:
            raise ValueError("the center loss needs the features the logits were computed from")
        center = self.center(features.float(), targets)
        return ce + self.center_weight * center, {"ce": ce.detach(), "center": center.detach()}
