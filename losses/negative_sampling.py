"""Skip-gram losses: negative sampling (Mikolov et al., "Distributed Representations of Words and
Phrases and their Compositionality", 2013) and the full softmax it approximates.

A skip-gram model scores a (centre, context) pair by ⟨u_c, v_o⟩, with u the input ("centre")
embeddings and v the output ("context") embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    r"""The noise distribution of negative sampling: the unigram distribution raised to ``power``.

    .. math:: P_n(w) = \frac{\#w^{\,p}}{\sum_{w'} \#w'^{\,p}}, \qquad p = 3/4

    Args:
        counts: how often each word of the vocabulary occurs (non-negative, not all zero).
        power: the exponent; 0.75 in word2vec, 1 gives the unigram distribution, 0 the uniform one.

    Returns:
        Probabilities summing to 1, in float64.

    Shape:
        - counts: ``(N,)``
        - output: ``(N,)``
    """
    weights = counts.to(torch.float64).clamp(min=0).pow(power) * (counts > 0)
    total = weights.sum()
    if total <= 0:
        raise ValueError("the word counts are all zero: the noise distribution needs at least one word that occurs")
    return weights / total


def negative_sampling_loss(centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    r"""Skip-gram negative-sampling loss per pair.

    .. math::
        \ell = -\log\sigma(\langle u_c, v_o\rangle) - \sum_{k=1}^{K} \log\sigma(-\langle u_c, v_{n_k}\rangle)

    with :math:`n_k` drawn from the noise distribution (:func:`noise_distribution`). Computed with
    ``logsigmoid``, which is exact for large scores of either sign.

    Args:
        centre: the centre words' input vectors u_c.
        context: the observed context words' output vectors v_o.
        negatives: K noise words' output vectors per pair.

    Returns:
        The loss of each pair (take ``.mean()`` for a batch).

    Shape:
        - centre: ``(B, D)``
        - context: ``(B, D)``
        - negatives: ``(B, K, D)``
        - output: ``(B,)``
    """
    positive = (centre * context).sum(dim=-1)
    negative = torch.bmm(negatives, centre.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return -F.logsigmoid(positive) - F.logsigmoid(-negative).sum(dim=-1)


def full_softmax_loss(centre: torch.Tensor, context_ids: torch.Tensor, output_vectors: torch.Tensor) -> torch.Tensor:
    r"""Skip-gram loss with the exact softmax over the whole vocabulary (small vocabularies).

    .. math:: \ell = -\log \frac{\exp\langle u_c, v_o\rangle}{\sum_{w=1}^{N} \exp\langle u_c, v_w\rangle}

    Args:
        centre: the centre words' input vectors u_c.
        context_ids: the observed context words.
        output_vectors: every word's output vector v.

    Returns:
        The loss of each pair (cross-entropy, natural log).

    Shape:
        - centre: ``(B, D)``
        - context_ids: ``(B,)``
        - output_vectors: ``(N, D)``
        - output: ``(B,)``
    """
    logits = centre @ output_vectors.T
    return F.cross_entropy(logits.float(), context_ids, reduction="none")
