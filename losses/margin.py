"""Margin loss on capsule lengths (Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules", 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin_loss(
    lengths: torch.Tensor,
    targets: torch.Tensor,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
) -> torch.Tensor:
    r"""Per-class hinge on the length of each class capsule, summed over classes, mean over batch.

    .. math::
        L = \frac1B \sum_b \sum_k T_k \max(0, m^+ - \lVert v_k\rVert)^2
            + \lambda (1 - T_k) \max(0, \lVert v_k\rVert - m^-)^2

    ``T_k`` is 1 for a class that is present. Integer targets mark one class per sample; a
    multi-hot float matrix marks several (e.g. two overlaid digits). Su's test used
    ``lam = 0.25``.

    Args:
        lengths: capsule lengths :math:`\lVert v_k\rVert`.
        targets: class indices, or a 0/1 matrix of present classes.
        m_plus: length a present class should reach.
        m_minus: length an absent class should stay under.
        lam: down-weighting of the absent classes.

    Returns:
        Scalar loss.

    Shape:
        - lengths: ``(B, C)``
        - targets: ``(B,)`` integer, or ``(B, C)`` float
    """
    if targets.dim() == 1:
        present = F.one_hot(targets.long(), lengths.shape[1]).to(lengths.dtype)
    elif targets.shape == lengths.shape:
        present = targets.to(lengths.dtype)
    else:
        raise ValueError(
            f"targets must be (B,) class indices or (B, C) like lengths {tuple(lengths.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    hit = present * torch.clamp(m_plus - lengths, min=0).pow(2)
    miss = lam * (1.0 - present) * torch.clamp(lengths - m_minus, min=0).pow(2)
    return (hit + miss).sum(dim=1).mean()
