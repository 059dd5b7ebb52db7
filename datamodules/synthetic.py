"""Tiny generated data for tests and smoke runs: class-dependent, low-rank images with noise."""

from __future__ import annotations

import torch

from datamodules.base import ArrayDataModule


class SyntheticDataModule(ArrayDataModule):
    """Images ``x = sigmoid(z @ B + m_y) + noise`` with a random rank-``rank`` basis ``B``.

    Every sample is drawn from a generator seeded by ``seed``: the same arguments give the same data.
    The low-rank structure gives the linear autoencoder a clear spectrum; the class means ``m_y``
    give classifiers something to learn.
    """

    num_classes = 4

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        seed: int = 0,
        num_samples: int = 256,
        image_size: int = 8,
        channels: int = 1,
        rank: int = 6,
        noise: float = 0.02,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, seed)
        self.input_shape = (channels, image_size, image_size)
        self.class_names = tuple(f"class{c}" for c in range(self.num_classes))
        self.num_samples = num_samples
        self.rank = rank
        self.noise = noise

    def load_arrays(self):
        g = torch.Generator().manual_seed(self.seed + 12345)
        n_features = int(torch.tensor(self.input_shape).prod())
        basis = torch.randn(self.rank, n_features, generator=g) / self.rank**0.5
        means = 2.0 * torch.randn(self.num_classes, n_features, generator=g) / n_features**0.25
        total = self.num_samples + self.num_samples // 4
        y = torch.arange(total) % self.num_classes
        z = torch.randn(total, self.rank, generator=g) * torch.linspace(2.0, 0.5, self.rank)
        x = torch.sigmoid(z @ basis + means[y]) + self.noise * torch.randn(total, n_features, generator=g)
        x = x.clamp(0, 1).reshape(total, *self.input_shape)
        n = self.num_samples
        return x[:n], y[:n], x[n:], y[n:]
