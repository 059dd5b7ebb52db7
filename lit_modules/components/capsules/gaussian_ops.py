"""The vote-sized part of an EM iteration as one autograd function with shared buffers.

In a matrix-capsule network the votes are by far the largest tensors, and on CPU most of the
cost of EM routing is creating and walking through vote-sized temporaries (a fresh 50 MB tensor
costs several times more in page faults than the arithmetic on it). Written with plain tensor
ops, each iteration would keep several of them (``V - mu``, its square, their products) alive
for the backward pass. :func:`gaussian_fit` computes everything of one iteration that touches
the votes -- weighted mean, weighted variance, Gaussian distance of every vote -- and saves only
small tensors plus the votes themselves, which all iterations share; the backward pass
recomputes ``V - mu``. The deviation is formed explicitly, not expanded as ``E[V^2] - mu^2``,
which would lose all precision once the variance is small compared with the votes.

The calls of one routing problem share a :class:`RoutingWorkspace`: the forward passes use one
scratch buffer, and the backward passes reuse one work buffer and add their gradients for the
votes into one accumulator, which the call of iteration 0 returns. Iteration ``k + 1`` depends
on the outputs of iteration ``k``, so autograd always runs the backward of iteration 0 last.

Tensors use the parent-major layout of :func:`em_routing`'s internals: ``(B, P, J, N, H)`` for
batch, parent positions, parent types, children per parent, pose components, so every sum over
children or over pose components is a batched matrix product.
"""

from __future__ import annotations

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class RoutingWorkspace:
    """Vote-sized buffers shared by the :func:`gaussian_fit` calls of one routing problem."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.grad_votes: torch.Tensor | None = None

    def get(self, name: str, like: torch.Tensor) -> torch.Tensor:
        if name not in self.buffers:
            self.buffers[name] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return self.buffers[name]

    def release(self) -> None:
        self.buffers.clear()
        self.grad_votes = None


class _GaussianFit(Function):
    @staticmethod
    def forward(ctx, votes, weights, eps, with_distance, workspace, first):
        mean = (weights.unsqueeze(3) @ votes).squeeze(3)
        squared = torch.sub(votes, mean.unsqueeze(3), out=workspace.get("forward", votes)).square_()
        var = (weights.unsqueeze(3) @ squared).squeeze(3) + eps
        distance = None
        if with_distance:
            # Scaling the scratch in place and summing beats a batched matrix-vector product,
            # whose per-matrix overhead dominates at these sizes.
            distance = squared.mul_((0.5 / var).unsqueeze(3)).sum(dim=-1)
        ctx.with_distance, ctx.workspace, ctx.first = with_distance, workspace, first
        ctx.save_for_backward(votes, weights, mean, var)
        return (mean, var, distance) if with_distance else (mean, var)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_mean, grad_var, grad_distance=None):
        votes, weights, mean, var = ctx.saved_tensors
        workspace = ctx.workspace
        slots, size = votes.shape[-2], votes.shape[-1]
        work = torch.sub(votes, mean.unsqueeze(3), out=workspace.get("work", votes)).square_()
        kappa = 0.5 / var
        if ctx.with_distance:
            # The distance depends on var through kappa = 1 / (2 var), d kappa / d var = -kappa / var.
            seen = (grad_distance.unsqueeze(3) @ work).squeeze(3)
            grad_var = grad_var - seen * kappa / var
            lhs = torch.stack((weights, grad_distance), dim=-1)
            rhs = 2.0 * torch.stack((grad_var, kappa), dim=-2)
        else:
            lhs, rhs = weights.unsqueeze(-1), 2.0 * grad_var.unsqueeze(-2)
        grad_weights = work.mul_(grad_var.unsqueeze(3)).sum(dim=-1)

        # Through the deviation, dL/dV = F * (V - mu) with the rank-1 or rank-2 factor
        # F = lhs @ rhs (written over `work`). F * mu = lhs @ (rhs * mu) is low-rank too, so it
        # joins the mean's own term w_n * grad_mean in one batched rank-3 update and no third
        # vote-sized buffer is needed; sums over children also come from the low-rank form.
        factor = torch.matmul(lhs, rhs, out=work)
        rhs_centre = rhs * mean.unsqueeze(-2)
        through_votes = (rhs * (lhs.transpose(-1, -2) @ votes)).sum(dim=-2)
        through_mean = (rhs_centre * lhs.sum(dim=-2).unsqueeze(-1)).sum(dim=-2)
        grad_mean = grad_mean - (through_votes - through_mean)

        grad_votes = None
        if ctx.needs_input_grad[0]:
            if workspace.grad_votes is None:
                workspace.grad_votes = torch.mul(factor, votes)
            else:
                workspace.grad_votes.addcmul_(factor, votes)
            accumulated = workspace.grad_votes
            low_rank_lhs = torch.cat((lhs, weights.unsqueeze(-1)), dim=-1)
            low_rank_rhs = torch.cat((-rhs_centre, grad_mean.unsqueeze(-2)), dim=-2)
            accumulated.view(-1, slots, size).baddbmm_(
                low_rank_lhs.reshape(-1, slots, low_rank_lhs.shape[-1]),
                low_rank_rhs.reshape(-1, low_rank_rhs.shape[-2], size),
            )
            if ctx.first:
                grad_votes = accumulated
        # mean = sum_n w_n V_n: its weights get V_n . grad_mean (computed in the free `work`).
        grad_weights = grad_weights + torch.mul(votes, grad_mean.unsqueeze(3), out=work).sum(dim=-1)
        if ctx.first:
            workspace.release()
        return grad_votes, grad_weights, None, None, None, None


def gaussian_fit(
    votes: torch.Tensor,
    weights: torch.Tensor,
    eps: float,
    workspace: RoutingWorkspace,
    iteration: int,
    with_distance: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    r"""Weighted Gaussian fit of the votes of each parent, and each vote's scaled distance.

    .. math::
        \mu^h = \sum_n w_n V_n^h, \qquad
        \sigma^{2,h} = \sum_n w_n (V_n^h - \mu^h)^2 + \epsilon, \qquad
        d_n = \sum_h \frac{(V_n^h - \mu^h)^2}{2\sigma^{2,h}}

    The weights are expected to sum to (at most) one over the children. Call it once per
    iteration of one routing problem, with the same ``votes`` tensor and workspace, iterations
    numbered from 0; call ``workspace.release()`` after the forward pass of the last one.

    Args:
        votes: the votes, parent-major, contiguous.
        weights: per (parent, child) weights, broadcastable to ``votes.shape[:4]``.
        eps: variance floor.
        workspace: buffers shared by the calls of one routing problem.
        iteration: index of the routing iteration.
        with_distance: also compute ``d`` (not needed in the last EM iteration).

    Returns:
        ``(mu, var, d)``; ``d`` is None without ``with_distance``.

    Shape:
        - votes: ``(B, P, J, N, H)``
        - weights: ``(B, P, J, N)``
        - mu, var: ``(B, P, J, H)``
        - d: ``(B, P, J, N)``
    """
    weights = weights.expand(votes.shape[:4]).contiguous()
    outputs = _GaussianFit.apply(votes, weights, float(eps), bool(with_distance), workspace, iteration == 0)
    return outputs if with_distance else (*outputs, None)
