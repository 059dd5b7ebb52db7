"""EM routing between matrix capsules (Hinton, Sabour and Frosst, ICLR 2018).

Layout. A routing problem has ``P`` parent positions, ``J`` parent capsule types per position
and, for each position, ``N`` child *slots*; ``votes[b, p, n, j]`` is the ``H``-dimensional vote
(a flattened 4x4 pose) of the child in slot ``n`` for parent ``(p, j)``. A dense (fully
connected) layer is ``P = 1``, and 4-D votes ``(B, N, J, H)`` are accepted for it.

Convolutional capsule layers. The slots of position ``p`` are the capsules in its receptive
field, so one child capsule occupies slots at several positions when receptive fields overlap.
The paper's E-step normalises a child's assignment probabilities over *all* parents it sends
votes to, so the parents of overlapping patches compete for it. ``child_index[p, n]`` names the
child held by each slot; the E-step sums ``a_j p_ij`` over the parent types with a plain
reduction and over positions with a scatter-add (``index_add``) into one entry per child, and
reads the normaliser back with a gather. This is the sparse form of ``fold``/``unfold``, and it
also covers receptive fields that are not rectangular. Without ``child_index`` every slot is a
child of its own and patches do not compete.

Numerics. Statistics are computed in float32 for half and bfloat16 inputs (float64 stays
float64), variances get ``eps`` added, the E-step is evaluated in log space with the log-sum-exp
shift taken per child over all of its parents, and ``log a_j`` comes from ``logsigmoid`` so an
inactive parent never produces ``log 0``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lit_modules.components.capsules.gaussian_ops import RoutingWorkspace, gaussian_fit

_LOG_2PI = math.log(2.0 * math.pi)

# The authors' schedule has scale 0.01 for costs summed over children; per child (see
# em_routing) the same temperature needs 0.01 * N, N = 288 to 512 children per parent in the
# paper's network. With 0.01 the activations of a normalised layer stay at 0.5 +- 0.002.
DEFAULT_LAMBDA_SCALE = 4.0


def inverse_temperature_schedule(
    iterations: int, lambda_scale: float = DEFAULT_LAMBDA_SCALE, decay: float = 0.95
) -> list[float]:
    r"""Inverse temperature per routing iteration, :math:`\lambda_i = s\,(1 - d^{\,i+1})`.

    The form and ``d = 0.95`` are the schedule the authors gave in their reply to the ICLR 2018
    reviews, with ``s = 0.01`` for costs summed over the children. :func:`em_routing` averages
    the cost over the children of a parent instead, which divides it by their number ``N``
    (288 to 512 in the paper's smallNORB network); ``s = 4`` restores the authors' temperature
    (``0.01 * N`` is 2.9 to 5.1). Pass ``lambda_scale=0.01`` for their literal numbers.

    Args:
        iterations: number of routing iterations ``t``.
        lambda_scale: ``s``.
        decay: ``d``; each iteration closes this fraction of the remaining gap to ``s``.

    Returns:
        ``[lambda_0, ..., lambda_{t-1}]``.
    """
    return [lambda_scale * (1.0 - decay ** (i + 1)) for i in range(iterations)]


def _statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _normalise_over_parents(logits: torch.Tensor, child_index: torch.Tensor | None, num_children: int) -> torch.Tensor:
    """Softmax of ``logits (B, P, J, N)`` over every parent ``(p, j)`` that shares a child."""
    if child_index is None:
        return torch.softmax(logits, dim=2)
    batch, positions, _, slots = logits.shape
    flat_index = child_index.reshape(-1)
    # The shift only keeps exp() in range; it cancels in the ratio, so it carries no gradient.
    slot_max = logits.detach().amax(dim=2).reshape(batch, positions * slots)
    child_max = slot_max.new_full((batch, num_children), -torch.inf)
    child_max = child_max.scatter_reduce(1, flat_index.expand(batch, -1), slot_max, reduce="amax", include_self=True)
    shift = child_max[:, flat_index].view(batch, positions, 1, slots)
    weights = torch.exp(logits - shift)
    slot_sum = weights.sum(dim=2).reshape(batch, positions * slots)
    child_sum = slot_sum.new_zeros(batch, num_children).index_add(1, flat_index, slot_sum)
    return weights / child_sum[:, flat_index].view(batch, positions, 1, slots)


def em_routing(
    votes: torch.Tensor,
    a_in: torch.Tensor,
    beta_u: torch.Tensor | float,
    beta_a: torch.Tensor | float,
    iterations: int = 3,
    lambda_scale: float = DEFAULT_LAMBDA_SCALE,
    lambda_decay: float = 0.95,
    eps: float = 1e-6,
    child_index: torch.Tensor | None = None,
    num_children: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""EM routing, Procedure 1 of "Matrix Capsules with EM Routing" (Hinton et al., ICLR 2018).

    :math:`R_{ij}` starts uniform over the parents of child ``i``. Each iteration runs

    **M-step** (per parent ``j`` and pose component ``h``)

    .. math::
        R'_{ij} = R_{ij}\,a_i, \quad
        \mu_j^h = \frac{\sum_i R'_{ij} V_{ij}^h}{\sum_i R'_{ij}}, \quad
        (\sigma_j^h)^2 = \frac{\sum_i R'_{ij} (V_{ij}^h - \mu_j^h)^2}{\sum_i R'_{ij}} + \epsilon,

    .. math::
        \mathrm{cost}_j^h = \Big(\beta_u + \tfrac12 \log (\sigma_j^h)^2\Big)\,
            \frac{\sum_i R'_{ij}}{N}, \quad
        a_j = \operatorname{sigmoid}\Big(\lambda\big(\beta_a - \textstyle\sum_h \mathrm{cost}_j^h\big)\Big),

    **E-step** (in log space)

    .. math::
        \log p_{ij} = \sum_h -\frac{(V_{ij}^h - \mu_j^h)^2}{2 (\sigma_j^h)^2}
            - \tfrac12 \log\big(2\pi(\sigma_j^h)^2\big), \quad
        R_{ij} = \operatorname{softmax}_{j \in \mathrm{parents}(i)}\big(\log a_j + \log p_{ij}\big).

    The input activations enter only through :math:`R'`; :math:`R'` is *not* renormalised over
    the parents, which would cancel :math:`a_i` exactly. The E-step of the last iteration cannot
    change the outputs and is skipped. ``lambda`` follows :func:`inverse_temperature_schedule`.

    Normalising the cost: :math:`\sum_i R'_{ij}` grows with the number of children ``N`` a
    parent has (``K*K*C_in`` in a convolutional layer, all input capsules in the class layer),
    which would make the activation of one layer saturate while another's stays at 1/2 under
    the same ``lambda``. Dividing by ``N`` turns it into the mean share of a child the parent
    receives, in [0, 1], the same scale in every layer; the default ``lambda_scale`` is chosen
    for this normalised cost (see :func:`inverse_temperature_schedule`).

    Args:
        votes: :math:`V_{ij}` with ``H = 16`` for 4x4 poses.
        a_in: child activations :math:`a_i`, one per slot (the same value in every slot that
            holds the same child).
        beta_u: per parent type, or a scalar.
        beta_a: per parent type, or a scalar.
        iterations: routing iterations ``t`` (the paper uses 3).
        lambda_scale: scale of the inverse-temperature schedule.
        lambda_decay: decay of the inverse-temperature schedule.
        eps: variance floor and guard of the divisions.
        child_index: which child each slot holds, values in ``[0, num_children)``; slots with
            the same value share one normalisation over all their parents.
        num_children: number of distinct children; inferred from ``child_index`` if omitted.

    Returns:
        ``(mu, a_out, R)``: parent poses, parent activations, and the assignments used in the
        final M-step, in the dtype of ``votes``.

    Shape:
        - votes: ``(B, P, N, J, H)``, or ``(B, N, J, H)`` for a dense layer
        - a_in: ``(B, P, N)``, or ``(B, N)``
        - beta_u, beta_a: ``(J,)`` or scalar
        - child_index: ``(P, N)``, integer
        - mu: ``(B, P, J, H)``, or ``(B, J, H)``
        - a_out: ``(B, P, J)``, or ``(B, J)``
        - R: ``(B, P, N, J)``, or ``(B, N, J)``
    """
    dense = votes.dim() == 4
    if dense:
        votes, a_in = votes.unsqueeze(1), a_in.unsqueeze(1)
    if votes.dim() != 5 or a_in.shape != votes.shape[:3]:
        raise ValueError(
            "em_routing expects votes (B, P, N, J, H) with a_in (B, P, N), or votes (B, N, J, H) "
            f"with a_in (B, N); got votes {tuple(votes.shape)} and a_in {tuple(a_in.shape)}"
        )
    if iterations < 1:
        raise ValueError(f"EM routing needs at least one iteration, got iterations={iterations}")
    batch, positions, slots, parents, _ = votes.shape
    out_dtype = votes.dtype
    dtype = _statistics_dtype(out_dtype)

    # Parent-major layout: every sum over children or pose components below is then a batched
    # matrix product over contiguous memory.
    v = votes.to(dtype).transpose(2, 3).contiguous()
    a = a_in.to(dtype).unsqueeze(2)
    beta_u = torch.as_tensor(beta_u, dtype=dtype, device=v.device).reshape(-1, 1)
    beta_a = torch.as_tensor(beta_a, dtype=dtype, device=v.device).reshape(-1)

    if child_index is None:
        r = v.new_full((1, 1, parents, slots), 1.0 / parents)
    else:
        child_index = child_index.to(device=v.device, dtype=torch.long)
        if num_children is None:
            num_children = int(child_index.max()) + 1
        slots_per_child = torch.bincount(child_index.reshape(-1), minlength=num_children)
        r = (1.0 / (parents * slots_per_child[child_index].to(dtype))).view(1, positions, 1, slots)

    workspace = RoutingWorkspace()
    schedule = inverse_temperature_schedule(iterations, lambda_scale, lambda_decay)
    for iteration, lam in enumerate(schedule):
        last = iteration == iterations - 1
        # M-step.
        weighted = r * a
        mass = weighted.sum(dim=3)
        weights = weighted / (mass + eps).unsqueeze(3)
        mu, var, distance = gaussian_fit(v, weights, eps, workspace, iteration, with_distance=not last)
        log_var = torch.log(var)
        cost = (beta_u + 0.5 * log_var) * (mass / slots).unsqueeze(3)
        logit_a = lam * (beta_a - cost.sum(dim=3))
        if last:
            break
        # E-step.
        log_norm = 0.5 * (log_var + _LOG_2PI).sum(dim=3, keepdim=True)
        log_p = -distance - log_norm
        logits = F.logsigmoid(logit_a).unsqueeze(3) + log_p
        r = _normalise_over_parents(logits, child_index, num_children)

    workspace.release()
    a_out = torch.sigmoid(logit_a)
    assignments = r.expand(batch, positions, parents, slots).transpose(2, 3)
    if dense:
        mu, a_out, assignments = mu.squeeze(1), a_out.squeeze(1), assignments.squeeze(1)
    return mu.to(out_dtype), a_out.to(out_dtype), assignments.to(out_dtype)
