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


class _FusedNegativeSampling(torch.autograd.Function):
    """Per-pair negative-sampling loss with its gradient written out (see :func:`fused_negative_sampling_loss`)."""

    @staticmethod
    def forward(ctx, centre: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(outputs, centre.unsqueeze(-1)).squeeze(-1)  # (B, K+1)
        target = torch.zeros_like(scores[:1])
        target[0, 0] = 1.0
        sign = 2.0 * target - 1.0  # +1 for the observed context, −1 for the noise words
        ctx.save_for_backward(centre, outputs, torch.sigmoid(scores) - target)
        return -F.logsigmoid(scores * sign).sum(dim=-1)

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        centre, outputs, grad_scores = ctx.saved_tensors
        grad_scores = grad_scores * grad_loss.unsqueeze(-1)
        grad_centre = torch.bmm(grad_scores.unsqueeze(1), outputs).squeeze(1)
        grad_outputs = grad_scores.unsqueeze(-1) * centre.unsqueeze(1)
        return grad_centre, grad_outputs


def fused_negative_sampling_loss(centre: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    r""":func:`negative_sampling_loss` on one tensor of output vectors, with the gradient in closed form.

    ``outputs[:, 0]`` is the observed context's output vector v_o and ``outputs[:, 1:]`` the K noise
    words' v_{n_k}. With scores s_0 = ⟨u_c, v_o⟩, s_k = ⟨u_c, v_{n_k}⟩ and targets t = (1, 0, …, 0):

    .. math::
        \ell = -\log\sigma(s_0) - \sum_k \log\sigma(-s_k), \qquad
        \frac{\partial\ell}{\partial s_j} = \sigma(s_j) - t_j, \qquad
        \frac{\partial\ell}{\partial u_c} = \sum_j (\sigma(s_j) - t_j)\,v_j, \qquad
        \frac{\partial\ell}{\partial v_j} = (\sigma(s_j) - t_j)\,u_c

    Same values and gradients as :func:`negative_sampling_loss`, but the backward pass is two
    products instead of autograd's graph through ``bmm`` and ``logsigmoid`` (about a third of the
    step on CPU), and one gather of the output table serves the context and the noise words.

    Shape:
        - centre: ``(B, D)``
        - outputs: ``(B, K + 1, D)``
        - output: ``(B,)``
    """
    return _FusedNegativeSampling.apply(centre, outputs)
