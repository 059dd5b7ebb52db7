r"""Alignment and uniformity of unit-length embeddings (Wang & Isola 2020, "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the Hypersphere").

A contrastive loss pulls the two views of an image together (alignment) and spreads all images over
the sphere (uniformity); both are measured on the normalised embeddings the loss compares. Lower is
better for both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    r"""Mean distance between the two views' embeddings of each image.

    .. math::
        \mathcal{L}_\text{align} = \frac{1}{N}\sum_k \lVert \hat z_{1k} - \hat z_{2k} \rVert_2^\alpha

    with :math:`\hat z = z / \lVert z \rVert`. 0 when both views land on the same point; 4 (α = 2)
    when they are antipodal.

    Shape:
        - z1, z2: ``(N, D)``, row ``k`` of both the same image
    """
    a, b = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    r"""Log of the mean Gaussian potential between every two distinct embeddings.

    .. math::
        \mathcal{L}_\text{uniform} = \log \frac{2}{N(N-1)} \sum_{j<k} e^{-t \lVert \hat z_j - \hat z_k \rVert_2^2}

    0 when every embedding is the same point; the more evenly they cover the sphere, the lower
    (for t = 2 and N → ∞ on the unit circle, about −1.53; higher dimensions go lower).

    Shape:
        - z: ``(N, D)``, N ≥ 2
    """
    if z.shape[0] < 2:
        raise ValueError("uniformity needs at least two embeddings")
    squared = torch.pdist(F.normalize(z.double(), dim=1)).pow(2)
    return (torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())).item()
