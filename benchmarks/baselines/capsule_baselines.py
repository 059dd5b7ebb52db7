"""Capsule layers written the way most public implementations write them, for benchmarking.

They compute the same functions as :mod:`lit_modules.components.capsules.layers` and take the
same parameters (``load_state_dict`` works both ways), but build their votes from
``repeat``-tiled copies of the weights and the inputs, keep routing logits at the full vote
shape, gather convolutional patches with index lists, and run EM on each patch as a separate
problem with plain autograd. Only the cross-patch normalisation of the E-step is added (as a
dense child-incidence matrix), because without it the function would differ from the one
benchmarked against. Not for training: they exist to measure what the vectorised layers save.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_modules.components.capsules.em_routing import DEFAULT_LAMBDA_SCALE, inverse_temperature_schedule


def _squash(s: torch.Tensor, k: float = 1.0, eps: float = 1e-7) -> torch.Tensor:
    squared_norm = (s**2).sum(dim=-1, keepdim=True)
    return squared_norm / (k + squared_norm) * s / torch.sqrt(squared_norm + eps)


class TiledDenseCapsules(nn.Module):
    """Per-pair ``W_ij`` votes via tiled ``matmul``; Sabour routing with full-shape logits."""

    def __init__(self, in_caps: int, in_dim: int, out_caps: int, out_dim: int, iterations: int = 3):
        super().__init__()
        self.iterations = iterations
        self.weight = nn.Parameter(torch.randn(in_caps, out_caps, out_dim, in_dim) * 0.05)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = u.shape[0]
        out_caps = self.weight.shape[1]
        u_tiled = u[:, :, None, :, None].repeat(1, 1, out_caps, 1, 1)
        w_tiled = self.weight[None].repeat(batch, 1, 1, 1, 1)
        u_hat = torch.matmul(w_tiled, u_tiled).squeeze(-1)
        b = torch.zeros_like(u_hat)
        for iteration in range(self.iterations):
            c = F.softmax(b, dim=2)
            v = _squash((c * u_hat).sum(dim=1, keepdim=True))
            if iteration < self.iterations - 1:
                b = b + (u_hat * v).sum(dim=-1, keepdim=True)
        return v.squeeze(1), c[..., 0]


def _em_per_patch(votes, a_in, beta_u, beta_a, iterations, lambda_scale, eps, incidence=None):
    """EM on ``votes (M, N, J, H)``, each of the ``M`` patches on its own, plain autograd.

    ``incidence`` ``(P*N, C)`` (0/1, patches ``M = B*P`` grouped per sample) adds the E-step
    normalisation over every parent of a child that appears in several patches.
    """
    patches, slots, parents, _ = votes.shape
    a_in = a_in.view(patches, slots, 1, 1)
    if incidence is None:
        r = torch.full((patches, slots, parents, 1), 1.0 / parents, dtype=votes.dtype)
    else:
        fan_out = incidence.sum(dim=0)[incidence.argmax(dim=1)] * parents
        r = (1.0 / fan_out).repeat(patches * slots // fan_out.numel())
        r = r.view(patches, slots, 1, 1).repeat(1, 1, parents, 1)
    beta_u, beta_a = beta_u.view(1, 1, parents, 1), beta_a.view(1, 1, parents)
    for iteration, lam in enumerate(inverse_temperature_schedule(iterations, lambda_scale)):
        r_a = r * a_in
        r_sum = r_a.sum(dim=1, keepdim=True)
        coeff = r_a / (r_sum + eps)
        mu = (coeff * votes).sum(dim=1, keepdim=True)
        sigma_sq = (coeff * (votes - mu) ** 2).sum(dim=1, keepdim=True) + eps
        cost_h = (beta_u + torch.log(torch.sqrt(sigma_sq))) * r_sum / slots
        a_out = torch.sigmoid(lam * (beta_a - cost_h.sum(dim=-1)))
        if iteration == iterations - 1:
            break
        ln_p = -((votes - mu) ** 2) / (2 * sigma_sq) - torch.log(torch.sqrt(sigma_sq)) - 0.5 * math.log(2 * math.pi)
        ln_ap = ln_p.sum(dim=-1, keepdim=True) + torch.log(a_out).unsqueeze(-1)
        if incidence is None:
            r = F.softmax(ln_ap, dim=2)
        else:
            per_sample = ln_ap.view(-1, incidence.shape[0] * parents)
            shifted = torch.exp(per_sample - per_sample.max(dim=1, keepdim=True).values)
            slot_sum = shifted.view(-1, incidence.shape[0], parents).sum(dim=-1)
            denominator = (slot_sum @ incidence) @ incidence.t()
            r = (shifted.view(-1, incidence.shape[0], parents) / denominator.unsqueeze(-1)).view(r.shape)
    return mu.squeeze(1), a_out.squeeze(1), r


class _TiledEMLayer(nn.Module):
    def __init__(self, weight_shape, out_caps, iterations, lambda_scale, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(weight_shape) * 0.5)
        self.beta_u = nn.Parameter(torch.zeros(out_caps))
        self.beta_a = nn.Parameter(torch.zeros(out_caps))
        self.iterations, self.lambda_scale, self.eps = iterations, lambda_scale, eps


class TiledConvMatrixCaps(_TiledEMLayer):
    """Convolutional matrix capsules with index-list patches and tiled votes."""

    def __init__(
        self, in_caps, out_caps, kernel_size=3, stride=1, iterations=3, lambda_scale=DEFAULT_LAMBDA_SCALE, eps=1e-6
    ):
        super().__init__((kernel_size, kernel_size, in_caps, out_caps, 4, 4), out_caps, iterations, lambda_scale, eps)
        self.kernel_size, self.stride, self.out_caps = kernel_size, stride, out_caps

    def _patch_indices(self, height, width):
        k, s = self.kernel_size, self.stride
        rows = []
        for y in range(0, height - k + 1, s):
            for x in range(0, width - k + 1, s):
                rows.append([(y + dy) * width + (x + dx) for dy in range(k) for dx in range(k)])
        return torch.tensor(rows)

    def forward(self, poses, activations):
        batch, height, width, channels = activations.shape
        k, s = self.kernel_size, self.stride
        out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
        positions, slots = out_h * out_w, k * k * channels
        index = self._patch_indices(height, width)
        pose_patches = poses.reshape(batch, height * width, channels, 4, 4)[:, index]
        act_patches = activations.reshape(batch, height * width, channels)[:, index]
        pose_tiled = pose_patches.reshape(batch, positions, slots, 1, 4, 4).repeat(1, 1, 1, self.out_caps, 1, 1)
        w_tiled = self.weight.reshape(1, 1, slots, self.out_caps, 4, 4).repeat(batch, positions, 1, 1, 1, 1)
        votes = torch.matmul(pose_tiled, w_tiled).reshape(batch * positions, slots, self.out_caps, 16)
        child = (index.unsqueeze(-1) * channels + torch.arange(channels)).reshape(-1)
        incidence = F.one_hot(child, height * width * channels).to(votes.dtype)
        mu, a_out, _ = _em_per_patch(
            votes,
            act_patches.reshape(batch * positions, slots),
            self.beta_u,
            self.beta_a,
            self.iterations,
            self.lambda_scale,
            self.eps,
            incidence,
        )
        return mu.reshape(batch, out_h, out_w, self.out_caps, 4, 4), a_out.reshape(batch, out_h, out_w, -1)


class TiledClassMatrixCaps(_TiledEMLayer):
    """Class capsules with tiled votes and coordinate addition built in a loop."""

    def __init__(
        self, in_caps, num_classes, iterations=3, coordinate_addition=True, lambda_scale=DEFAULT_LAMBDA_SCALE, eps=1e-6
    ):
        super().__init__((in_caps, num_classes, 4, 4), num_classes, iterations, lambda_scale, eps)
        self.num_classes, self.coordinate_addition = num_classes, coordinate_addition

    def forward(self, poses, activations):
        batch, height, width, channels = activations.shape
        slots = height * width * channels
        pose_tiled = poses.reshape(batch, slots, 1, 4, 4).repeat(1, 1, self.num_classes, 1, 1)
        w_tiled = self.weight.reshape(1, 1, channels, self.num_classes, 4, 4).repeat(batch, height * width, 1, 1, 1, 1)
        votes = torch.matmul(pose_tiled, w_tiled.reshape(batch, slots, self.num_classes, 4, 4))
        if self.coordinate_addition:
            coords = torch.zeros(1, height, width, channels, self.num_classes, 4, 4, dtype=votes.dtype)
            for y in range(height):
                for x in range(width):
                    coords[0, y, x, :, :, 0, 3] = (y + 0.5) / height
                    coords[0, y, x, :, :, 1, 3] = (x + 0.5) / width
            votes = votes + coords.reshape(1, slots, self.num_classes, 4, 4)
        mu, a_out, _ = _em_per_patch(
            votes.reshape(batch, slots, self.num_classes, 16),
            activations.reshape(batch, slots),
            self.beta_u,
            self.beta_a,
            self.iterations,
            self.lambda_scale,
            self.eps,
        )
        return mu.reshape(batch, self.num_classes, 4, 4), a_out
