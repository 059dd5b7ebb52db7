"""Spread loss for class activations (Hinton, Sabour and Frosst, "Matrix Capsules with EM Routing", 2018)."""

from __future__ import annotations

import torch


def spread_loss(activations: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor:
    r"""Squared hinge between the target activation and every other class, mean over batch.

    .. math::
        L = \frac1B \sum_b \sum_{i \ne t} \max\big(0,\ m - (a_t - a_i)\big)^2

    Raising ``m`` from 0.2 to 0.9 during training (:func:`spread_margin`) avoids dead capsules
    early on.

    Args:
        activations: class activations :math:`a`.
        targets: class indices :math:`t`.
        margin: :math:`m`.

    Returns:
        Scalar loss.

    Shape:
        - activations: ``(B, C)``
        - targets: ``(B,)`` integer
    """
    targets = targets.long()
    target_activation = activations.gather(1, targets.unsqueeze(1))
    gaps = torch.clamp(margin - (target_activation - activations), min=0).pow(2)
    # The target's own term would be max(0, m)^2; it is not part of the sum.
    gaps = gaps.scatter(1, targets.unsqueeze(1), 0.0)
    return gaps.sum(dim=1).mean()


def spread_margin(progress: float, start: float = 0.2, end: float = 0.9) -> float:
    """Margin of :func:`spread_loss` rising linearly from ``start`` to ``end``.

    Args:
        progress: fraction of training done, clamped to [0, 1].
        start: margin at the beginning.
        end: margin from ``progress = 1`` on.

    Returns:
        The margin.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return start + (end - start) * progress
