"""Routing-by-agreement between vector capsules: Sabour et al. (2017) and Su's K-Means variant.

Both functions take the votes of every child capsule ``i`` for every parent capsule ``j`` and
return the parents' output vectors and the final coupling coefficients. The coupling
coefficients of a child are a softmax over the *parents* ``j`` (each child distributes itself
among the parents); the routing logits have one entry per (child, parent) pair, never one per
vote component.
"""

from __future__ import annotations

import torch

from lit_modules.components.capsules.squash import squash


def _parent_major(votes: torch.Tensor, iterations: int) -> torch.Tensor:
    """Votes as ``(B, n_out, n_in, D)``, contiguous, so that both routing contractions are
    batched matrix products; free when ``votes`` is already a transposed view of that layout."""
    if votes.dim() != 4:
        raise ValueError(f"votes must have shape (batch, n_in, n_out, dim_out), got {tuple(votes.shape)}")
    if iterations < 1:
        raise ValueError(f"routing needs at least one iteration, got iterations={iterations}")
    return votes.transpose(1, 2).contiguous()


def sabour_routing(votes: torch.Tensor, iterations: int = 3, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Dynamic routing from Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules" (2017).

    Starting from :math:`b_{ij} = 0`, each of the ``iterations`` rounds computes

    .. math::
        c_{ij} = \frac{\exp b_{ij}}{\sum_k \exp b_{ik}}, \qquad
        s_j = \sum_i c_{ij}\, \hat u_{j|i}, \qquad
        v_j = \frac{\lVert s_j\rVert^2}{1 + \lVert s_j\rVert^2}\frac{s_j}{\lVert s_j\rVert},

    and, between rounds, accumulates the agreement :math:`b_{ij} \mathrel{+}= \langle \hat
    u_{j|i}, v_j\rangle`. The update after the last round would not change the output, so it is
    skipped.

    Args:
        votes: predictions :math:`\hat u_{j|i}` of each child for each parent.
        iterations: number of routing rounds ``r`` (the paper uses 3).
        eps: added to squared norms inside square roots.

    Returns:
        ``(v, c)``: the squashed parent vectors and the coupling coefficients used to compute
        them; ``c`` sums to one over the parents.

    Shape:
        - votes: ``(B, n_in, n_out, D_out)``
        - v: ``(B, n_out, D_out)``
        - c: ``(B, n_in, n_out)``
    """
    u_hat = _parent_major(votes, iterations)
    logits = u_hat.new_zeros(u_hat.shape[:3])
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=1)
        v = squash((coupling.unsqueeze(2) @ u_hat).squeeze(2), eps=eps, k=1.0)
        if iteration < iterations - 1:
            logits = logits + (u_hat @ v.unsqueeze(3)).squeeze(3)
    return v, coupling.transpose(1, 2)


def su_routing(votes: torch.Tensor, iterations: int = 3, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Routing as soft K-Means, from Su Jianlin (kexue.fm/archives/4819 and 5112).

    Starting from :math:`b_{ij} = 0`, each of the ``iterations`` rounds computes

    .. math::
        c_{ij} = \frac{\exp b_{ij}}{\sum_k \exp b_{ik}}, \qquad
        o_j = \sum_i c_{ij}\, \hat u_{j|i},

    and, on every round but the last, normalises the cluster centres and *overwrites* the logits
    with the similarity to them:

    .. math::
        o_j \leftarrow \frac{o_j}{\lVert o_j\rVert}, \qquad b_{ij} = \langle \hat u_{j|i}, o_j\rangle.

    Only the final :math:`o_j` is squashed, with the softer
    :math:`\lVert o\rVert^2 / (0.5 + \lVert o\rVert^2)` length factor.

    Args:
        votes: predictions :math:`\hat u_{j|i}` of each child for each parent.
        iterations: number of routing rounds (Su uses 3).
        eps: added to squared norms inside square roots.

    Returns:
        ``(v, c)``: the squashed parent vectors and the coupling coefficients of the last round;
        ``c`` sums to one over the parents.

    Shape:
        - votes: ``(B, n_in, n_out, D_out)``
        - v: ``(B, n_out, D_out)``
        - c: ``(B, n_in, n_out)``
    """
    u_hat = _parent_major(votes, iterations)
    logits = u_hat.new_zeros(u_hat.shape[:3])
    for iteration in range(iterations):
        coupling = torch.softmax(logits, dim=1)
        centres = (coupling.unsqueeze(2) @ u_hat).squeeze(2)
        if iteration < iterations - 1:
            # Unit-length centres make the logits cosine-like similarities, so their scale does
            # not grow with the number of children.
            centres = centres / torch.sqrt(centres.pow(2).sum(dim=-1, keepdim=True) + eps)
            logits = (u_hat @ centres.unsqueeze(3)).squeeze(3)
    return squash(centres, eps=eps, k=0.5), coupling.transpose(1, 2)
