"""Triplet ranking loss on cosine similarity (Su Jianlin, kexue.fm/archives/4493, 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def triplet_ranking_loss(
    query: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    r"""Hinge that asks the query to be closer (in cosine) to its answer than to a wrong one by ``margin``.

    .. math::
        L = \frac1B \sum_b \max\big(0,\ m + \cos(q_b, a^-_b) - \cos(q_b, a^+_b)\big)

    Args:
        query: query vectors :math:`q`.
        positive: matching answers :math:`a^+`.
        negative: non-matching answers :math:`a^-`.
        margin: :math:`m`.

    Returns:
        Scalar loss.

    Shape:
        - query, positive, negative: ``(B, D)``
    """
    cos_pos = F.cosine_similarity(query, positive, dim=1)
    cos_neg = F.cosine_similarity(query, negative, dim=1)
    return torch.clamp(margin + cos_neg - cos_pos, min=0).mean()
