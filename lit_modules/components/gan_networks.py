"""Generator and critic networks for WGAN-GP: a DCGAN-style convolutional pair for images, an MLP pair for points.

The critic has no BatchNorm: the gradient penalty is defined per sample, and batch statistics
would make each sample's score depend on the rest of the batch (Gulrajani et al. 2017, §4). The
optional normalisation is a per-sample LayerNorm (``GroupNorm`` with one group normalises each
sample over channels and positions). Nor does the critic end in a sigmoid: its output is an
unbounded score. With no batch coupling anywhere, evaluating the critic on several sets of samples
concatenated into one batch gives exactly the scores of separate passes.
"""

from __future__ import annotations

import math
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn

NETWORKS = ("auto", "conv", "mlp")
CRITIC_NORMS = ("none", "layer")


class _LeakyReLUFirstOrder(torch.autograd.Function):
    """``leaky_relu`` whose backward multiplies by a slope mask taken out of the graph (see :class:`CriticReLU`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, negative_slope: float) -> torch.Tensor:
        y = F.leaky_relu(x, negative_slope)
        ctx.save_for_backward(y)  # y > 0 exactly where x > 0 (slope >= 0)
        ctx.negative_slope = negative_slope
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (y,) = ctx.saved_tensors
        slope = torch.where(y > 0, 1.0, ctx.negative_slope).to(grad.dtype)  # a comparison: no graph to y
        return grad * slope, None


class CriticReLU(nn.Module):
    """``LeakyReLU(negative_slope)`` (``ReLU`` at 0) for the critic: same values and gradients, a cheaper penalty.

    The gradient penalty differentiates the critic's input gradient again (a double backward).
    A piecewise-linear activation's derivative with respect to its input is zero almost
    everywhere, but torch's ``leaky_relu_backward`` and ``threshold_backward`` declare that
    derivative as a zero tensor, so autograd sends zeros back through the whole forward pass of
    the interpolates (a full critic backward that adds nothing). Here the backward multiplies by a
    mask computed without a graph: the penalty's backward stops at the gradient graph, and every
    first and second derivative is the same as with ``nn.LeakyReLU``.
    """

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LeakyReLUFirstOrder.apply(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def with_torch_activations(critic: nn.Module) -> nn.Module:
    """A copy of ``critic`` (same weights) whose :class:`CriticReLU` layers are torch's ``nn.LeakyReLU``.

    For comparisons: the benchmark's public-style reference and the tests that check
    :class:`CriticReLU` changes no value.
    """
    stock = deepcopy(critic)
    for module in list(stock.modules()):
        for name, child in module.named_children():
            if isinstance(child, CriticReLU):
                setattr(module, name, nn.LeakyReLU(child.negative_slope))
    return stock


def resolve_network(network: str, input_shape: tuple[int, ...]) -> str:
    """``conv`` or ``mlp`` for samples of ``input_shape``; raises a one-line ValueError for a mismatch.

    ``auto`` picks ``conv`` for images ``(C, H, W)`` and ``mlp`` for vectors ``(D,)``. A conv pair
    halves the image twice, so it needs square images with a side divisible by 4.
    """
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got '{network}'")
    shape = tuple(input_shape)
    if network == "auto":
        network = "conv" if len(shape) == 3 else "mlp"
    if network == "conv":
        if len(shape) != 3:
            raise ValueError(
                f"the conv network needs images (channels, height, width), but the data gives samples of shape "
                f"{shape}; use --model.network mlp (or auto) for vector data"
            )
        _, height, width = shape
        if height != width or height % 4 or height < 4:
            raise ValueError(
                f"the conv network needs square images with a side divisible by 4 (28×28, 32×32, ...), but the data "
                f"gives {height}×{width}; resize the data or use --model.network mlp"
            )
    elif len(shape) != 1:
        raise ValueError(f"the mlp network needs vector samples (D,), but the data gives {shape}; use conv or auto")
    return network


class ConvGenerator(nn.Module):
    """z → linear → (4w, s/4, s/4) → two ×2 transposed convs → 3×3 conv → sigmoid: ``(C, s, s)`` images in [0, 1].

    Args:
        latent_dim: size of z.
        image_shape: ``(C, s, s)`` with ``s`` divisible by 4.
        width: channels of the last hidden map (``w``); the first has ``4w``.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        channels, size, _ = image_shape
        self.start = size // 4
        self.project = nn.Sequential(nn.Linear(latent_dim, 4 * width * self.start**2), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.Sigmoid(),  # images live in [0, 1] (the data modules' range); only the critic must stay unbounded
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Shape:
        - z: ``(B, latent_dim)``
        - output: ``(B, C, s, s)``
        """
        h = self.project(z).view(z.shape[0], -1, self.start, self.start)
        return self.body(h)


class ConvCritic(nn.Module):
    """Two stride-2 4×4 convolutions with LeakyReLU(0.2) (:class:`CriticReLU`), optionally per-sample LayerNorm,
    → linear → one score.

    Args:
        image_shape: ``(C, s, s)`` with ``s`` divisible by 4.
        width: channels of the first conv (the second has ``2w``).
        norm: ``none`` or ``layer`` (never BatchNorm: see the module docstring).
    """

    def __init__(self, image_shape: tuple[int, int, int], width: int = 64, norm: str = "none") -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise ValueError(f"critic norm must be one of {CRITIC_NORMS}, got '{norm}'")
        channels, size, _ = image_shape

        def normalise(c: int) -> nn.Module:
            return nn.GroupNorm(1, c) if norm == "layer" else nn.Identity()

        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            CriticReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            normalise(2 * width),
            CriticReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape:
        - x: ``(B, C, s, s)``
        - output: ``(B,)``
        """
        return self.body(x).squeeze(1)


def _mlp(sizes: list[int], norm: str = "none") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(n_out)] if norm == "layer" else []
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z → three ReLU layers of ``width`` → a point in R^D (no output squashing: points are unbounded)."""

    def __init__(self, latent_dim: int, sample_shape: tuple[int, ...], width: int = 128) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        self.net = _mlp([latent_dim, width, width, width, math.prod(self.sample_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Shape:
        - z: ``(B, latent_dim)``
        - output: ``(B, *sample_shape)``
        """
        return self.net(z).view(z.shape[0], *self.sample_shape)


class MLPCritic(nn.Module):
    """A point in R^D → three ReLU layers of ``width`` → one score.

    Torch's own ``ReLU``: at these sizes (width 128, batch 256) :class:`CriticReLU`'s Python-level
    backward cost more (10.6 against 9.8 ms per critic step with penalty, CPU, one thread) than the
    zero second derivatives it saves.
    """

    def __init__(self, sample_shape: tuple[int, ...], width: int = 128, norm: str = "none") -> None:
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise ValueError(f"critic norm must be one of {CRITIC_NORMS}, got '{norm}'")
        self.net = _mlp([math.prod(sample_shape), width, width, width, 1], norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape:
        - x: ``(B, *sample_shape)``
        - output: ``(B,)``
        """
        return self.net(x.flatten(1)).squeeze(1)


def build_pair(
    network: str, input_shape: tuple[int, ...], latent_dim: int, width: int, critic_norm: str
) -> tuple[nn.Module, nn.Module]:
    """``(generator, critic)`` for samples of ``input_shape`` (``network`` already resolved)."""
    if network == "conv":
        return ConvGenerator(latent_dim, input_shape, width), ConvCritic(input_shape, width, critic_norm)
    return MLPGenerator(latent_dim, input_shape, width), MLPCritic(input_shape, width, critic_norm)
