"""The squashing non-linearity that maps a capsule's raw vector to a length in [0, 1)."""

from __future__ import annotations

import torch


def squash(s: torch.Tensor, eps: float = 1e-7, k: float = 1.0, dim: int = -1) -> torch.Tensor:
    r"""Shrink a vector to length below one while keeping its direction.

    .. math::
        \operatorname{squash}(s) = \frac{\lVert s\rVert^2}{k + \lVert s\rVert^2}
        \cdot \frac{s}{\sqrt{\lVert s\rVert^2 + \epsilon}}

    ``k = 1`` is Sabour et al. (2017), "Dynamic Routing Between Capsules"; ``k = 0.5`` is the
    variant from kexue.fm/archives/4819, which lets short vectors grow faster.

    Args:
        s: raw capsule vectors.
        eps: added to the squared norm under the square root, so that the zero vector maps to
            zero with a finite gradient instead of ``0/0``.
        k: the constant in the denominator of the length factor.
        dim: the capsule dimension.

    Returns:
        The squashed vectors, same shape and dtype as ``s``.

    Shape:
        - s: ``(..., D)`` (with ``dim=-1``)
        - output: ``(..., D)``
    """
    squared_norm = s.pow(2).sum(dim=dim, keepdim=True)
    scale = squared_norm / (k + squared_norm) / torch.sqrt(squared_norm + eps)
    return scale * s
