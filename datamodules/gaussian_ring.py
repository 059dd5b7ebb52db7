"""Points from a mixture of Gaussians on a circle (the "8 Gaussians" toy of Gulrajani et al. 2017), seeded.

A generator that covers every mode puts its points near all of them; one that collapses puts
them near a few. :func:`mode_coverage` measures both.
"""

from __future__ import annotations

import math

import torch

from datamodules.base import ArrayDataModule


def ring_modes(num_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres of ``num_modes`` equally spaced Gaussians on a circle of ``radius``.

    Shape:
        - output: ``(num_modes, 2)``
    """
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, std: float, within: float = 3.0) -> dict:
    """How well ``points`` cover ``modes``: the share of points within ``within``·std of their nearest mode,
    and the share of all points that each mode holds (counting only those near points).

    Returns:
        ``{"near": float, "per_mode": list[float], "modes_hit": int}``; ``modes_hit`` counts the modes
        holding at least one near point.

    Shape:
        - points: ``(N, 2)``
        - modes: ``(M, 2)``
    """
    distances = torch.cdist(points.float(), modes.float())
    nearest, index = distances.min(dim=1)
    near = nearest <= within * std
    counts = torch.bincount(index[near], minlength=len(modes)).float()
    per_mode = (counts / max(1, len(points))).tolist()
    return {"near": float(near.float().mean()), "per_mode": per_mode, "modes_hit": int((counts > 0).sum())}


class GaussianRingDataModule(ArrayDataModule):
    """``num_modes`` isotropic Gaussians of standard deviation ``std`` on a circle of ``radius``.

    Batches are ``(x, y)``: points ``(B, 2)`` and the index of the mode each was drawn from. The
    points are drawn once from a generator seeded by ``seed``, so every rank and every resumed
    run sees the same data.

    Args:
        batch_size: points per batch on each device.
        num_workers: DataLoader worker processes.
        seed: fixes the points, the validation split and the shuffling order.
        num_samples: training points (the test split has a quarter as many more).
        num_modes: Gaussians on the circle.
        radius: radius of the circle.
        std: standard deviation of each Gaussian.
    """

    input_shape = (2,)

    def __init__(
        self,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        num_samples: int = 20000,
        num_modes: int = 8,
        radius: float = 2.0,
        std: float = 0.05,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction=0.1, seed=seed)
        if num_modes < 1 or radius <= 0 or std <= 0 or num_samples < 10:
            raise ValueError("gaussian_ring needs num_modes >= 1, radius > 0, std > 0 and num_samples >= 10")
        self.num_samples, self.num_modes, self.radius, self.std = num_samples, num_modes, radius, std
        self.num_classes = num_modes
        self.class_names = tuple(f"mode{i}" for i in range(num_modes))
        self.modes = ring_modes(num_modes, radius)

    @property
    def name(self) -> str:
        return "gaussian_ring"

    def load_arrays(self):
        g = torch.Generator().manual_seed(self.seed + 4242)
        total = self.num_samples + self.num_samples // 4
        y = torch.randint(self.num_modes, (total,), generator=g)
        x = self.modes[y] + self.std * torch.randn(total, 2, generator=g)
        n = self.num_samples
        return x[:n], y[:n], x[n:], y[n:]
