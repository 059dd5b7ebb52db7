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


def alias_table(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Walker's alias table of a discrete distribution (Vose's construction), for O(1) sampling.

    Column i of the table holds word i with probability ``accept[i]`` and word ``alias[i]`` otherwise;
    picking a column uniformly gives word w with probability

    .. math:: \frac{1}{N}\Big(a_w + \sum_{i:\ \mathrm{alias}_i = w} (1 - a_i)\Big) = p_w .

    Args:
        probs: a probability vector (non-negative, summing to 1).

    Returns:
        ``(accept, alias)``: float64 and int64, for :func:`alias_sample`.

    Shape:
        - probs: ``(N,)``
        - accept, alias: ``(N,)``
    """
    if probs.dim() != 1 or len(probs) == 0 or (probs < 0).any():
        raise ValueError(f"an alias table needs a non-empty 1-D vector of probabilities, got {tuple(probs.shape)}")
    scaled = (probs.double() / probs.double().sum() * len(probs)).tolist()
    accept, alias = [1.0] * len(scaled), list(range(len(scaled)))
    small = [i for i, q in enumerate(scaled) if q < 1.0]
    large = [i for i, q in enumerate(scaled) if q >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    for i in small + large:  # left over only through rounding: their columns keep themselves
        accept[i] = 1.0
    return torch.tensor(accept, dtype=torch.float64), torch.tensor(alias, dtype=torch.int64)


def alias_sample(
    accept: torch.Tensor, alias: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draws from the distribution of an :func:`alias_table`: a uniform column, then its word or its alias.

    Two uniform draws and two gathers per sample, against ``torch.multinomial``'s search of the
    cumulative distribution (about 5× slower for 20,000 draws from 14,000 words on one CPU thread).

    Shape:
        - accept, alias: ``(N,)``
        - output: ``shape``, int64
    """
    columns = torch.randint(len(accept), shape, generator=generator, device=accept.device)
    coin = torch.rand(shape, generator=generator, dtype=accept.dtype, device=accept.device)
    return torch.where(coin < accept[columns], columns, alias[columns])


class _SharedNoiseNegativeSampling(torch.autograd.Function):
    """Negative-sampling loss with noise words shared by groups (:func:`shared_noise_negative_sampling_loss`)."""

    @staticmethod
    def forward(ctx, centre, outputs, group):
        pairs, groups = len(group), len(centre)
        context, noise = outputs[:pairs], outputs[pairs:].view(groups, -1, outputs.shape[1])
        centre_of_pair = centre.index_select(0, group)  # (B, D)
        positive = torch.bmm(centre_of_pair.unsqueeze(1), context.unsqueeze(-1)).view(-1)  # (B,)
        negative = torch.bmm(noise, centre.unsqueeze(-1)).squeeze(-1)  # (G, K)
        ctx.save_for_backward(centre, outputs, group, centre_of_pair, torch.sigmoid(positive) - 1.0,
                              torch.sigmoid(negative))
        return -F.logsigmoid(positive) - F.logsigmoid(-negative).sum(dim=-1).index_select(0, group)

    @staticmethod
    def backward(ctx, grad_loss):
        centre, outputs, group, centre_of_pair, grad_positive, grad_negative = ctx.saved_tensors
        pairs, groups = len(group), len(centre)
        context, noise = outputs[:pairs], outputs[pairs:].view(groups, -1, outputs.shape[1])
        grad_positive = grad_positive * grad_loss  # (B,)
        weight = torch.zeros(groups, dtype=grad_loss.dtype, device=grad_loss.device).index_add_(0, group, grad_loss)
        grad_negative = grad_negative * weight.unsqueeze(-1)  # (G, K): each pair of the group adds its share
        grad_centre = torch.bmm(grad_negative.unsqueeze(1), noise).squeeze(1)
        grad_centre.index_add_(0, group, grad_positive.unsqueeze(-1) * context)
        grad_outputs = torch.empty_like(outputs)
        torch.mul(grad_positive.unsqueeze(-1), centre_of_pair, out=grad_outputs[:pairs])
        torch.mul(grad_negative.unsqueeze(-1), centre.unsqueeze(1), out=grad_outputs[pairs:].view(noise.shape))
        return grad_centre, grad_outputs, None


def shared_noise_negative_sampling_loss(
    centre: torch.Tensor, outputs: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    r"""Negative-sampling loss of pairs that share their centre word's vector and noise words, gradient in closed form.

    Pair b belongs to group g(b). The groups' centre vectors u_g come once per group; ``outputs``
    holds first the pairs' context vectors v_{o_b} (B rows), then each group's K noise words'
    output vectors v_{n_{g,k}} (G·K rows, group after group), so that one gather of the output
    table serves both. Each pair's loss is :func:`negative_sampling_loss` with its group's noise words:

    .. math::
        \ell_b = -\log\sigma(s_b) - \sum_k \log\sigma(-s_{g(b),k}), \qquad
        s_b = \langle u_{g(b)}, v_{o_b}\rangle,\ s_{g,k} = \langle u_g, v_{n_{g,k}}\rangle

    For an upstream gradient w_b and W_g = Σ_{b ∈ g} w_b:

    .. math::
        \frac{\partial L}{\partial v_{o_b}} = w_b(\sigma(s_b) - 1)\,u_{g(b)}, \qquad
        \frac{\partial L}{\partial v_{n_{g,k}}} = W_g\,\sigma(s_{g,k})\,u_g, \qquad
        \frac{\partial L}{\partial u_g} = \sum_{b \in g} w_b(\sigma(s_b) - 1)\,v_{o_b}
            + W_g \sum_k \sigma(s_{g,k})\,v_{n_{g,k}}

    With groups of one pair this is :func:`fused_negative_sampling_loss`. Sharing the noise words
    of the pairs of one centre word (word2vec's window gives each about six) keeps every pair's
    expected loss and gradient, and gathers and updates K output rows per group instead of per pair.

    Shape:
        - centre: ``(G, D)``
        - outputs: ``(B + G·K, D)``
        - group: ``(B,)`` int64 in [0, G)
        - output: ``(B,)``
    """
    if len(group) > len(outputs) or (len(outputs) - len(group)) % max(1, len(centre)):
        raise ValueError(f"outputs must hold {len(group)} context rows and K rows per group for {len(centre)} groups, "
                         f"got {len(outputs)} rows")
    return _SharedNoiseNegativeSampling.apply(centre, outputs, group)
