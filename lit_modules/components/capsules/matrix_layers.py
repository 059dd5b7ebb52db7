"""Matrix capsules (Hinton, Sabour and Frosst, ICLR 2018): primary, convolutional and class layers.

Matrix capsules on a grid are a pair ``poses (B, H, W, C, 4, 4)`` and ``activations
(B, H, W, C)`` with ``C`` capsule types per position (channels last, so a capsule's 16 pose
entries are contiguous).
"""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.components.capsules.em_routing import DEFAULT_LAMBDA_SCALE, em_routing


class PrimaryMatrixCaps(nn.Module):
    """1x1 convolutions to matrix capsules: a linear 4x4 pose and a sigmoid activation per type.

    Args:
        in_channels: channels ``A`` of the input feature map.
        capsule_types: capsule types ``B`` per position.

    Shape:
        - input: ``(B, A, H, W)``
        - output: ``poses (B, H, W, capsule_types, 4, 4)``, ``activations (B, H, W, capsule_types)``
    """

    def __init__(self, in_channels: int, capsule_types: int) -> None:
        super().__init__()
        self.capsule_types = capsule_types
        self.pose = nn.Conv2d(in_channels, capsule_types * 16, kernel_size=1)
        self.activation = nn.Conv2d(in_channels, capsule_types, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = x.shape
        poses = self.pose(x).permute(0, 2, 3, 1).reshape(batch, height, width, self.capsule_types, 4, 4)
        activations = torch.sigmoid(self.activation(x)).permute(0, 2, 3, 1)
        return poses, activations


class _EMRoutingLayer(nn.Module):
    """Shared parameters of the EM-routed layers: transforms, beta_u, beta_a, schedule."""

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        out_caps: int,
        iterations: int,
        lambda_scale: float,
        eps: float,
        init_std: float,
    ) -> None:
        super().__init__()
        # std 0.5 keeps the entries of M W at the scale of M's entries (each sums 4 products).
        self.weight = nn.Parameter(torch.randn(weight_shape) * init_std)
        self.beta_u = nn.Parameter(torch.zeros(out_caps))
        self.beta_a = nn.Parameter(torch.zeros(out_caps))
        self.iterations, self.lambda_scale, self.eps = iterations, lambda_scale, eps

    def _route(self, votes, a_in, child_index=None, num_children=None):
        return em_routing(
            votes,
            a_in,
            self.beta_u,
            self.beta_a,
            iterations=self.iterations,
            lambda_scale=self.lambda_scale,
            eps=self.eps,
            child_index=child_index,
            num_children=num_children,
        )


def conv_child_index(
    height: int, width: int, channels: int, kernel_size: int, stride: int, device=None
) -> torch.Tensor:
    """Flat index ``(y * width + x) * channels + c`` of the child in every slot of every patch.

    Slots are ordered ``(ky, kx, c)`` and positions row-major, as in :class:`ConvMatrixCaps`.

    Shape:
        - output: ``(H_out * W_out, kernel_size * kernel_size * channels)``
    """
    out_h = (height - kernel_size) // stride + 1
    out_w = (width - kernel_size) // stride + 1
    rows = (torch.arange(out_h, device=device) * stride).view(-1, 1, 1, 1, 1)
    cols = (torch.arange(out_w, device=device) * stride).view(1, -1, 1, 1, 1)
    ky = torch.arange(kernel_size, device=device).view(1, 1, -1, 1, 1)
    kx = torch.arange(kernel_size, device=device).view(1, 1, 1, -1, 1)
    c = torch.arange(channels, device=device).view(1, 1, 1, 1, -1)
    index = ((rows + ky) * width + (cols + kx)) * channels + c
    return index.reshape(out_h * out_w, kernel_size * kernel_size * channels)


class ConvMatrixCaps(_EMRoutingLayer):
    """Convolutional matrix capsules: votes ``V = M W`` over KxK patches, then EM routing.

    ``W`` has one 4x4 matrix per (kernel offset, input type, output type), shared across
    positions. Patches are strided views of the input (``Tensor.unfold``), so neither the
    inputs nor ``W`` are copied per position; the only vote-sized tensor is the votes. Routing
    lets parents whose receptive fields overlap compete for a child (see :func:`em_routing`).

    Args:
        in_caps: input capsule types ``C_in``.
        out_caps: output capsule types ``C_out``.
        kernel_size: ``K``.
        stride: stride (no padding).
        iterations: EM iterations.
        lambda_scale: scale of the inverse-temperature schedule.
        eps: variance floor.
        init_std: standard deviation of the initial transforms.

    Shape:
        - input: ``poses (B, H, W, C_in, 4, 4)``, ``activations (B, H, W, C_in)``
        - output: ``poses (B, H', W', C_out, 4, 4)``, ``activations (B, H', W', C_out)`` with
          ``H' = (H - K) // stride + 1``
    """

    def __init__(
        self,
        in_caps: int,
        out_caps: int,
        kernel_size: int = 3,
        stride: int = 1,
        iterations: int = 3,
        lambda_scale: float = DEFAULT_LAMBDA_SCALE,
        eps: float = 1e-6,
        init_std: float = 0.5,
    ) -> None:
        shape = (kernel_size, kernel_size, in_caps, out_caps, 4, 4)
        super().__init__(shape, out_caps, iterations, lambda_scale, eps, init_std)
        self.kernel_size, self.stride, self.out_caps = kernel_size, stride, out_caps
        self._index_cache: dict[tuple, torch.Tensor] = {}

    def _child_index(self, height: int, width: int, channels: int, device) -> torch.Tensor:
        key = (height, width, channels, str(device))
        if key not in self._index_cache:
            self._index_cache[key] = conv_child_index(height, width, channels, self.kernel_size, self.stride, device)
        return self._index_cache[key]

    def forward(self, poses: torch.Tensor, activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, height, width, channels = activations.shape
        k, s, out_caps = self.kernel_size, self.stride, self.out_caps
        # (B, H', W', C_in, 4, 4, K, K): a strided view, no copy.
        patches = poses.unfold(1, k, s).unfold(2, k, s)
        out_h, out_w = patches.shape[1], patches.shape[2]
        positions, slots = out_h * out_w, k * k * channels
        # Poses of every slot n = (ky, kx, c) as rows of 16: (N, B*P, 16).
        lhs = patches.permute(6, 7, 3, 0, 1, 2, 4, 5).reshape(slots, batch * positions, 16)
        votes = torch.bmm(lhs, _block_diagonal(self.weight.reshape(slots, out_caps, 4, 4)))
        # Parent-major (B, P, C_out, N, 16) is the layout EM routing computes in.
        votes = votes.view(slots, batch, positions, out_caps, 16).permute(1, 2, 3, 0, 4)
        votes = votes.reshape(batch, positions, out_caps, slots, 16)
        index = self._child_index(height, width, channels, poses.device)
        a_in = activations.reshape(batch, -1)[:, index]
        mu, a_out, _ = self._route(votes.transpose(2, 3), a_in, index, height * width * channels)
        return mu.view(batch, out_h, out_w, out_caps, 4, 4), a_out.view(batch, out_h, out_w, out_caps)


class ClassMatrixCaps(_EMRoutingLayer):
    """Class capsules: one transform per (input type, class) shared over positions, EM routing.

    With coordinate addition, the scaled centre ``((y + 0.5) / H, (x + 0.5) / W)`` of the
    input capsule's position is added to the first two entries of the right-hand column of its
    vote (``vote[..., 0, 3]`` and ``vote[..., 1, 3]``), so class poses keep where the parts were.

    Args:
        in_caps: input capsule types ``C_in``.
        num_classes: output capsules.
        iterations: EM iterations.
        coordinate_addition: add the scaled positions to the votes.
        lambda_scale: scale of the inverse-temperature schedule.
        eps: variance floor.
        init_std: standard deviation of the initial transforms.

    Shape:
        - input: ``poses (B, H, W, C_in, 4, 4)``, ``activations (B, H, W, C_in)``
        - output: ``poses (B, num_classes, 4, 4)``, ``activations (B, num_classes)``
    """

    def __init__(
        self,
        in_caps: int,
        num_classes: int,
        iterations: int = 3,
        coordinate_addition: bool = True,
        lambda_scale: float = DEFAULT_LAMBDA_SCALE,
        eps: float = 1e-6,
        init_std: float = 0.5,
    ) -> None:
        super().__init__((in_caps, num_classes, 4, 4), num_classes, iterations, lambda_scale, eps, init_std)
        self.num_classes, self.coordinate_addition = num_classes, coordinate_addition

    def forward(self, poses: torch.Tensor, activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, height, width, channels = activations.shape
        classes = self.num_classes
        # Poses of every input type c as rows of 16: (C_in, B*H*W, 16).
        lhs = poses.permute(3, 0, 1, 2, 4, 5).reshape(channels, batch * height * width, 16)
        votes = torch.bmm(lhs, _block_diagonal(self.weight)).view(channels, batch, height, width, classes, 16)
        if self.coordinate_addition:
            offsets = coordinate_offsets(height, width, votes.dtype, votes.device)
            votes = votes + offsets.view(height, width, 1, 16)
        # Parent-major (B, classes, N, 16) with children ordered (y, x, c).
        votes = votes.permute(1, 4, 2, 3, 0, 5).reshape(batch, classes, height * width * channels, 16)
        mu, a_out, _ = self._route(votes.transpose(1, 2), activations.reshape(batch, -1))
        return mu.view(batch, classes, 4, 4), a_out


def _block_diagonal(weight: torch.Tensor) -> torch.Tensor:
    """Transforms ``W (S, J, 4, 4)`` as ``(S, 16, J*16)`` matrices that map a flattened pose to votes.

    ``out[s, (r', m), (j, r, l)] = [r == r'] * W[s, j, m, l]``, so ``M.flatten() @ out[s]`` is
    ``M @ W[s, j]`` flattened, for every ``j`` at once. Multiplying 16-wide rows instead of the
    4x4 matrices' 4-wide rows costs 4x the (negligible) arithmetic but puts each vote's 16
    entries next to each other in the product, so the reordering into the routing layout
    moves 64-byte runs rather than 16-byte ones, which on CPU is several times faster.
    """
    slots, parents = weight.shape[:2]
    eye = torch.eye(4, dtype=weight.dtype, device=weight.device)
    return torch.einsum("ab,sjml->samjbl", eye, weight).reshape(slots, 16, parents * 16)


def coordinate_offsets(height: int, width: int, dtype=None, device=None) -> torch.Tensor:
    """Scaled centre of every grid cell, placed in the right-hand column of a 4x4 matrix.

    Entry ``[y, x, 0, 3]`` is ``(y + 0.5) / H`` and ``[y, x, 1, 3]`` is ``(x + 0.5) / W``; all
    others are zero.

    Shape:
        - output: ``(H, W, 4, 4)``
    """
    offsets = torch.zeros(height, width, 4, 4, dtype=dtype, device=device)
    offsets[:, :, 0, 3] = ((torch.arange(height, dtype=dtype, device=device) + 0.5) / height).view(-1, 1)
    offsets[:, :, 1, 3] = ((torch.arange(width, dtype=dtype, device=device) + 0.5) / width).view(1, -1)
    return offsets
