"""Capsule layers: vector capsules with dynamic routing, matrix capsules with EM routing.

Layouts. Vector capsules are ``(B, N, D)``: batch, capsules, capsule dimension. Matrix capsules
on a grid are a pair ``poses (B, H, W, C, 4, 4)`` and ``activations (B, H, W, C)`` with ``C``
capsule types per position (channels last, so a capsule's 16 pose entries are contiguous); they
live in :mod:`.matrix_layers` and are re-exported here.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.components.capsules.dynamic_routing import sabour_routing, su_routing
from lit_modules.components.capsules.matrix_layers import (
    ClassMatrixCaps,
    ConvMatrixCaps,
    PrimaryMatrixCaps,
    conv_child_index,
    coordinate_offsets,
)
from lit_modules.components.capsules.squash import squash

_ROUTINGS = {"sabour": sabour_routing, "su": su_routing}


class PrimaryCaps(nn.Module):
    """Convolution whose output channels are grouped into squashed vector capsules (Sabour 2017).

    Capsule ``n`` of the output is type ``c`` at grid position ``(y, x)`` with
    ``n = (c * H' + y) * W' + x``.

    Args:
        in_channels: channels of the input feature map.
        capsule_types: capsule types per position (32 in the paper).
        capsule_dim: length of each capsule vector (8 in the paper).
        kernel_size: convolution kernel (9 in the paper).
        stride: convolution stride (2 in the paper).
        squash_k: constant of :func:`squash` (1 for Sabour, 0.5 for Su).

    Shape:
        - input: ``(B, in_channels, H, W)``
        - output: ``(B, capsule_types * H' * W', capsule_dim)``, 6x6 positions for a 20x20 input
    """

    def __init__(
        self,
        in_channels: int = 256,
        capsule_types: int = 32,
        capsule_dim: int = 8,
        kernel_size: int = 9,
        stride: int = 2,
        squash_k: float = 1.0,
    ) -> None:
        super().__init__()
        self.capsule_types, self.capsule_dim, self.squash_k = capsule_types, capsule_dim, squash_k
        self.conv = nn.Conv2d(in_channels, capsule_types * capsule_dim, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        batch, _, height, width = features.shape
        capsules = features.view(batch, self.capsule_types, self.capsule_dim, height, width)
        capsules = capsules.permute(0, 1, 3, 4, 2).reshape(batch, -1, self.capsule_dim)
        return squash(capsules, k=self.squash_k)


class DenseCapsules(nn.Module):
    """Fully connected capsule layer: votes from every input capsule, then dynamic routing.

    Votes are :math:`\\hat u_{j|i} = W_{ij} u_i` with one matrix per (input, output) pair
    (Sabour et al.), or :math:`W_j u_i` with one matrix per output capsule shared by all inputs
    (Su's default, which also accepts any number of input capsules).

    Args:
        in_caps: number of input capsules; required for per-pair weights.
        in_dim: input capsule dimension.
        out_caps: number of output capsules (classes).
        out_dim: output capsule dimension.
        routing: ``"sabour"`` or ``"su"``.
        iterations: routing iterations.
        shared_weights: share ``W_j`` across input capsules.
        init_std: standard deviation of the initial weights.

    Shape:
        - input: ``(B, in_caps, in_dim)``
        - output: ``(v, c)`` with ``v (B, out_caps, out_dim)`` and coupling coefficients
          ``c (B, in_caps, out_caps)``
    """

    def __init__(
        self,
        in_caps: int | None,
        in_dim: int,
        out_caps: int,
        out_dim: int,
        routing: str = "sabour",
        iterations: int = 3,
        shared_weights: bool = False,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        if routing not in _ROUTINGS:
            raise ValueError(f"unknown routing {routing!r}; choose one of {sorted(_ROUTINGS)}")
        if not shared_weights and in_caps is None:
            raise ValueError("per-pair weights need in_caps; pass it or set shared_weights=True")
        self.routing, self.iterations, self.shared_weights = routing, iterations, shared_weights
        shape = (out_caps, out_dim, in_dim) if shared_weights else (in_caps, out_caps, out_dim, in_dim)
        self.weight = nn.Parameter(torch.randn(shape) * init_std)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, in_caps, in_dim = u.shape
        if self.shared_weights:
            out_caps, out_dim, _ = self.weight.shape
            # One GEMM (B*n_in, D_in) x (D_in, n_out*D_out) for all votes.
            votes = u.reshape(-1, in_dim) @ self.weight.permute(2, 0, 1).reshape(in_dim, -1)
            votes = votes.view(batch, in_caps, out_caps, out_dim)
        else:
            _, out_caps, out_dim, _ = self.weight.shape
            # One small GEMM per input capsule, (B, D_in) x (D_in, n_out*D_out), batched.
            votes = torch.bmm(u.transpose(0, 1), self.weight.permute(0, 3, 1, 2).reshape(in_caps, in_dim, -1))
            votes = votes.view(in_caps, batch, out_caps, out_dim).permute(1, 0, 2, 3)
        # Routing works parent-major; hand it a transposed view of a parent-major tensor.
        parent_major = votes.transpose(1, 2).contiguous()
        return _ROUTINGS[self.routing](parent_major.transpose(1, 2), self.iterations)


__all__ = [
    "ClassMatrixCaps",
    "ConvMatrixCaps",
    "DenseCapsules",
    "PrimaryCaps",
    "PrimaryMatrixCaps",
    "conv_child_index",
    "coordinate_offsets",
]
