"""Straightforward NT-Xent implementations to time ``losses.contrastive`` against.

``cross_entropy_reference`` is how the loss is usually written: the full similarity matrix, the
diagonal masked, and a cross-entropy whose targets point at the other view. ``broadcast_reference``
is the same loss with the cosine similarities taken by broadcasting, which builds an
``(2N, 2N, D)`` tensor: one of the traps SPEC §7 lists, timed to show what it costs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE as cross-entropy over the masked similarity matrix.

    Shape:
        - z1, z2: ``(N, D)``
        - output: ``()``
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, targets)


def broadcast_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The same loss with ``F.cosine_similarity`` broadcast over all pairs: an ``(2N, 2N, D)`` intermediate.

    Shape:
        - z1, z2: ``(N, D)``
        - output: ``()``
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, targets)
