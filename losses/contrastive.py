r"""Contrastive losses for two views of a batch: InfoNCE (NT-Xent) and FlatNCE.

Chen, Luo, Carin et al., "Simpler, Faster, Stronger: Breaking The log-K Curse On Contrastive
Learners With FlatNCE" (2021, arXiv 2107.01152); Su, kexue.fm/archives/8586.

Both start from the same scores. The two views ``z1``, ``z2`` of N images are stacked into 2N
anchors; each anchor ``i`` has one positive ``t(i)`` (the other view of its image) and as
negatives every other row of the batch, gathered from every process under DDP (2N·W − 2 of them
on W processes):

.. math::
    s_{ij} = \frac{\hat z_i \cdot \hat z_j}{\tau}, \qquad
    \xi_i = \sum_{j \ne i, t(i)} e^{s_{ij} - s_{i t(i)}}

with :math:`\hat z = z / \lVert z\rVert`. InfoNCE is :math:`\log(1 + \xi_i)`; FlatNCE is
:math:`\xi_i / \operatorname{sg}(\xi_i)`, whose value is always 1 and whose gradient is that of
:math:`\log \xi_i = \operatorname{logsumexp}_{j \ne i, t(i)}(s_{ij}) - s_{i t(i)}`. When the
positive is far more similar than every negative (small batches, easy views) :math:`\xi_i \to 0`
and InfoNCE's gradient, :math:`\xi_i/(1+\xi_i)\,\nabla\log\xi_i`, vanishes into rounding error;
FlatNCE's does not. Because the FlatNCE value carries no information, :func:`flatnce` also returns
the InfoNCE value of the same scores for logging.

Every score is computed in float32 (or float64) with autocast off, whatever the inputs' precision, so
``logsumexp`` neither overflows at τ = 0.01 nor loses the positive in fp16 rounding. The scores
are one ``(2N, 2N·W)`` matrix product (no ``(N, N, D)`` broadcast), and positives are found by
position, not by labels built from a configured batch size, so a last partial batch is scored
correctly.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather as all_gather_with_grad


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """The rows of ``x`` from every process, in rank order, with gradients flowing back to each owner.

    Processes may hold different numbers of rows (a last partial batch): sizes are exchanged first
    and each block is padded to the longest for the collective, then cut back. The backward pass
    sums, on every process, the gradients all processes computed for its rows
    (``torch.distributed.nn.functional.all_gather``), so after DDP averages parameter gradients
    each process has the gradient of the loss over the whole gathered batch.

    Returns:
        ``(rows of all processes, index of this process's first row in them, number of processes)``;
        without an initialised process group of two or more, ``(x, 0, 1)``.

    Shape:
        - x: ``(n_r, D)`` on process r
        - output: ``(Σ_r n_r, D)``
    """
    if not _distributed():
        return x, 0, 1
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = F.pad(x, (0, 0, 0, max(counts) - x.shape[0]))
    blocks = all_gather_with_grad(padded.contiguous())
    return torch.cat([block[:n] for block, n in zip(blocks, counts)]), sum(counts[:rank]), world


class Scores(NamedTuple):
    """What both losses are built from (see :func:`positive_and_negative_scores`)."""

    positive: torch.Tensor
    negative: torch.Tensor
    weight: float
    num_keys: int


def positive_and_negative_scores(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool = True) -> Scores:
    r"""Each anchor's positive score and the log-sum-exp of its negative scores, in float32 or wider.

    .. math::
        p_i = s_{i t(i)}, \qquad n_i = \operatorname{logsumexp}_{j \ne i, t(i)} s_{ij}

    Anchors are this process's ``2N`` rows ``[z1; z2]``; keys are the rows of every process when
    ``gather`` is true and a process group is running, else the local rows. An anchor without any
    negative (one pair in the whole batch) gets :math:`n_i = -\infty`.

    Args:
        z1: embeddings of the first view.
        z2: embeddings of the second view, row ``k`` the same image as row ``k`` of ``z1``.
        temperature: τ > 0.
        gather: use the other processes' rows as negatives too.

    Returns:
        :class:`Scores`: ``positive`` and ``negative`` ``(2N,)`` each; ``weight``, the factor that turns
        a sum over this process's anchors into its share of the mean over all processes' anchors
        (``1/2N`` on one process; ``W / Σ_r 2N_r`` when gathered, so that DDP's gradient average
        gives the gradient of the global mean even when processes hold different batch sizes);
        ``num_keys``, the rows scored against (2N, or 2N·W when gathered).

    Shape:
        - z1, z2: ``(N, D)``, any floating dtype
        - positive, negative: ``(2N,)``, float32 (float64 for float64 inputs)
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # Autocast would run the product in fp16/bf16; leaving it costs a little, so only when it is on.
    on = torch.is_autocast_enabled(z1.device.type)
    with torch.autocast(device_type=z1.device.type, enabled=False) if on else contextlib.nullcontext():
        # float32 at least (float64 stays float64): fp16 would overflow exp(1/τ) and round s_it away.
        dtype = torch.promote_types(z1.dtype, torch.float32)
        anchors = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
        keys, offset, world = gather_rows(anchors) if gather else (anchors, 0, 1)
        two_n, n = anchors.shape[0], z1.shape[0]
        scaled = anchors / temperature  # 1/τ on the (2N, D) side, not on the (2N, K) scores
        # The other view of row i is row (i + N) mod 2N of this process: a row-wise product, with no
        # gather from the score matrix (whose backward would write a second (2N, K) tensor).
        positive = (scaled * anchors.roll(n, dims=0)).sum(dim=1)
        logits = scaled @ keys.T  # (2N, K): the only quadratic tensor
        # Each row's own and positive entries leave the negatives: three diagonals of this process's
        # (2N, 2N) block, written in place (the product's backward needs its inputs, not its output).
        own = logits[:, offset : offset + two_n]
        for diagonal in (own.diagonal(), own[:n, n:].diagonal(), own[n:, :n].diagonal()):
            diagonal.fill_(float("-inf"))
        negative = torch.logsumexp(logits, dim=1)
    weight = world / keys.shape[0] if world > 1 else 1.0 / two_n
    return Scores(positive, negative, weight, keys.shape[0])


def _without_negatives(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    # A single pair has nothing to contrast with: a zero loss that still reaches the parameters,
    # so DDP's reducer and the optimiser see every parameter used.
    return (z1.sum() + z2.sum()).to(torch.promote_types(z1.dtype, torch.float32)) * 0.0


def infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = True) -> torch.Tensor:
    r"""InfoNCE (NT-Xent, SimCLR's loss), the mean over all anchors of every process.

    .. math::
        L = \frac{1}{2N} \sum_i \log\bigl(1 + \xi_i\bigr)
          = \frac{1}{2N} \sum_i \Bigl(\operatorname{logsumexp}_{j \ne i} s_{ij} - s_{i t(i)}\Bigr)

    computed as ``softplus(n_i - p_i)`` from :func:`positive_and_negative_scores`, which is the
    cross-entropy of the positive among all 2N·W − 1 other rows.

    Args:
        z1, z2: embeddings of the two views (normalised here).
        temperature: τ.
        gather: take negatives from every process under DDP.

    Returns:
        This process's share of the loss: averaged over processes (as DDP averages gradients and
        ``sync_dist`` logging averages values) it is the mean over every anchor of every process; on
        one process, the mean over its anchors. A float32 (or float64) scalar.

    Shape:
        - z1, z2: ``(N, D)``
        - output: ``()``
    """
    scores = positive_and_negative_scores(z1, z2, temperature, gather)
    if scores.num_keys <= 2:
        return _without_negatives(z1, z2)
    return F.softplus(scores.negative - scores.positive).sum() * scores.weight


def flatnce(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""FlatNCE: the loss to optimise, and the InfoNCE value of the same scores to log.

    .. math::
        L_\text{flat} = \frac{1}{2N} \sum_i \frac{\xi_i}{\operatorname{sg}(\xi_i)}
                      = \frac{1}{2N} \sum_i e^{\ell_i - \operatorname{sg}(\ell_i)}, \qquad
        \ell_i = \log \xi_i = n_i - p_i

    Its value is 1 for every batch; its gradient is
    :math:`\frac{1}{2N}\sum_i \nabla \ell_i`, that of the mean over anchors of
    ``logsumexp(negatives − positive)``, which stays of order 1/τ however small :math:`\xi_i` is.
    Writing it through :math:`\ell_i` rather than :math:`\xi_i` keeps it finite when
    :math:`\xi_i` under- or overflows.

    Args:
        z1, z2: embeddings of the two views (normalised here).
        temperature: τ.
        gather: take negatives from every process under DDP.

    Returns:
        ``(loss, infonce)``: the FlatNCE loss (this process's share, see :func:`infonce`) and the
        detached InfoNCE value of the same scores. Float32 (or float64) scalars.

    Shape:
        - z1, z2: ``(N, D)``
        - outputs: ``()``, ``()``
    """
    scores = positive_and_negative_scores(z1, z2, temperature, gather)
    if scores.num_keys <= 2:
        zero = _without_negatives(z1, z2)
        return zero, zero.detach()
    log_xi = scores.negative - scores.positive
    loss = torch.exp(log_xi - log_xi.detach()).sum() * scores.weight
    info = F.softplus(log_xi.detach()).sum() * scores.weight
    return loss, info
