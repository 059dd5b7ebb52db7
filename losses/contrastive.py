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
import functools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
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


@functools.lru_cache(maxsize=32)
def _negatives_mask(two_n: int, num_keys: int, offset: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(2N, K)``: 0 where column j is a negative of row i, −∞ at row i's own and positive columns.

    Made once per batch shape and device (a last partial batch adds one more), not on every call.
    """
    n = two_n // 2
    rows = torch.arange(two_n, device=device)
    mask = torch.zeros(two_n, num_keys, device=device, dtype=dtype)
    mask[rows, rows + offset] = float("-inf")
    mask[rows, (rows + n) % two_n + offset] = float("-inf")
    return mask


class _ContrastiveLoss(torch.autograd.Function):
    r"""FlatNCE or InfoNCE of ``ℓ_i = logsumexp_{j ≠ i, t(i)} s_ij − s_{i t(i)}``, and InfoNCE's value, by hand.

    Forward: the scores and the mask of each row's own and positive columns in one fused ``addmm``
    (``mask + â kᵀ / τ``, the only ``(2N, K)`` tensor: no ``(N, N, D)`` broadcast, no gather from
    it), its row-wise logsumexp, and the positive cosine of each image, the same for both of its
    views, as one row-wise product of the two ``(N, D)`` halves, subtracted from both halves. The
    score matrix then becomes, in place, :math:`P_{ij} = \partial \ell_i / \partial s_{ij}`, the
    softmax over row i's negatives (0 on the masked columns), kept for the backward pass. The
    losses, with w the weight of one anchor (``1/2N`` on one process):

    - FlatNCE: :math:`w \sum_i \xi_i / \operatorname{sg}(\xi_i)`, whose value is :math:`w \cdot 2N`
      exactly (:math:`e^{\ell - \ell} = 1`) and whose gradient is :math:`w \nabla \ell_i` per anchor;
    - InfoNCE: :math:`w \sum_i \operatorname{softplus}(\ell_i)`, gradient
      :math:`w\,\sigma(\ell_i) \nabla \ell_i`.

    The second output, InfoNCE's value, carries no gradient. Backward, with :math:`g_i` the
    gradient reaching :math:`\ell_i` and :math:`W = \operatorname{diag}(g) P`:

    .. math::
        \frac{\partial L}{\partial \hat a} = \frac{1}{\tau}\bigl(W k - (g_i + g_{t(i)})\,\hat a_{t(i)}\bigr),
        \qquad \frac{\partial L}{\partial k} = \frac{1}{\tau} W^\top \hat a

    and, when the keys are the anchors themselves (one process), one product ``(W + Wᵀ) â``.
    With ``normalise`` the rows come in unnormalised, :math:`\hat a = a / \lVert a \rVert`, and the
    gradient goes on through the normalisation: :math:`(g - \hat a\,(\hat a \cdot g)) / \lVert a \rVert`.
    Two matrix products at most and no autograd graph over the ``(2N, K)`` tensor: fewer passes over
    it than autograd's, and one autograd node in all, which at small batches is most of the cost.

    Shape:
        - rows: ``(2N, D)``, unit rows unless ``normalise``; keys: ``(K, D)`` unit rows, or None for
          the anchors themselves
        - mask: ``(2N, K)``, 0 or −∞; outputs: ``()``, ``()``
    """

    @staticmethod
    def forward(ctx, rows, keys, mask, inv_tau, normalise, flat, weight):
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True).clamp_min_(1e-12) if normalise else None
        anchors = rows / norms if normalise else rows
        n = anchors.shape[0] // 2
        logits = torch.addmm(mask, anchors, (anchors if keys is None else keys).T, alpha=inv_tau)
        lse = torch.logsumexp(logits, dim=1)
        cosine = (anchors[:n] * anchors[n:]).sum(dim=1)
        log_xi = torch.sub(lse.view(2, n), cosine, alpha=inv_tau)  # (2, N)
        probs = logits.sub_(lse.unsqueeze(1)).exp_()
        info = F.softplus(log_xi).sum() * weight
        loss = log_xi.new_full((), log_xi.numel() * weight) if flat else info.clone()
        ctx.save_for_backward(anchors, keys, probs, norms, None if flat else torch.sigmoid(log_xi))
        ctx.inv_tau, ctx.weight = inv_tau, weight
        ctx.mark_non_differentiable(info)
        return loss, info

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _):
        anchors, keys, probs, norms, slope = ctx.saved_tensors
        inv_tau, n = ctx.inv_tau, anchors.shape[0] // 2
        on = torch.is_autocast_enabled(anchors.device.type)
        with torch.autocast(device_type=anchors.device.type, enabled=False) if on else contextlib.nullcontext():
            scale = grad_loss.to(probs.dtype) * ctx.weight
            if slope is None:  # FlatNCE: ∂L/∂ℓ_i is the same for every anchor
                weights = probs * scale
                positive = anchors.roll(n, dims=0) * (2 * scale)
            else:  # InfoNCE: ∂L/∂ℓ_i = w σ(ℓ_i)
                grad = slope * scale  # (2, N)
                weights = probs * grad.reshape(-1, 1)
                pair = (grad[0] + grad[1]).unsqueeze(1)
                positive = torch.cat([pair * anchors[n:], pair * anchors[:n]])
            if keys is None:
                both = weights + weights.T  # the anchors' gradient as anchors and as keys, in one product
                grad_anchors, grad_keys = torch.addmm(positive, both, anchors, beta=-inv_tau, alpha=inv_tau), None
            else:
                grad_anchors = torch.addmm(positive, weights, keys, beta=-inv_tau, alpha=inv_tau)
                grad_keys = torch.mm(weights.T, anchors).mul_(inv_tau)
            if norms is not None:
                radial = (anchors * grad_anchors).sum(dim=1, keepdim=True)
                grad_anchors = grad_anchors.sub_(anchors * radial).div_(norms)
        return grad_anchors, grad_keys, None, None, None, None, None


def contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: bool, flat: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(loss, InfoNCE value)`` of two views: FlatNCE's loss if ``flat``, else InfoNCE's (both in float32+).

    Anchors are this process's ``2N`` rows ``[z1; z2]``; keys are the rows of every process when
    ``gather`` is true and a process group is running, else the local rows. Each loss is this
    process's share of the mean over all processes' anchors: weight ``1/2N`` per anchor on one
    process, ``W / Σ_r 2N_r`` when gathered, so that DDP's gradient average gives the gradient of the
    global mean even when processes hold different batch sizes. See :class:`_ContrastiveLoss`.

    Shape:
        - z1, z2: ``(N, D)``, any floating dtype
        - outputs: ``()``, ``()``, float32 (float64 for float64 inputs)
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
        n = z1.shape[0]
        rows = torch.cat([z1, z2]).to(dtype)
        if gather and _distributed():
            anchors = F.normalize(rows, dim=1)
            keys, offset, world = gather_rows(anchors)
            inputs, num_keys, weight = (anchors, keys, False), keys.shape[0], world / keys.shape[0]
        else:  # one process: no gathered copy, and the normalisation inside the hand-written gradient
            inputs, num_keys, weight, offset = (rows, None, True), 2 * n, 1.0 / (2 * n), 0
        if num_keys <= 2:
            zero = _without_negatives(z1, z2)
            return zero, zero.detach()
        mask = _negatives_mask(2 * n, num_keys, offset, rows.device, dtype)
        rows_in, keys_in, normalise = inputs
        return _ContrastiveLoss.apply(rows_in, keys_in, mask, 1.0 / temperature, normalise, flat, weight)


def _without_negatives(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    # A single pair has nothing to contrast with: a zero loss that still reaches the parameters,
    # so DDP's reducer and the optimiser see every parameter used.
    return (z1.sum() + z2.sum()).to(torch.promote_types(z1.dtype, torch.float32)) * 0.0


def infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = True) -> torch.Tensor:
    r"""InfoNCE (NT-Xent, SimCLR's loss), the mean over all anchors of every process.

    .. math::
        L = \frac{1}{2N} \sum_i \log\bigl(1 + \xi_i\bigr)
          = \frac{1}{2N} \sum_i \Bigl(\operatorname{logsumexp}_{j \ne i} s_{ij} - s_{i t(i)}\Bigr)

    computed as ``softplus(ℓ_i)`` by :func:`contrastive_loss`, which is the
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
    return contrastive_loss(z1, z2, temperature, gather, flat=False)[0]


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
    return contrastive_loss(z1, z2, temperature, gather, flat=True)
