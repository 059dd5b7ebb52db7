"""A linear autoencoder: x̂ = x C D with no bias and no activation."""

from __future__ import annotations

import torch
from torch import nn


class LinearAutoencoder(nn.Module):
    """x̂ = (x C) D with C: n×k (encoder) and D: k×n (decoder).

    At its optimum x C D is the rank-k truncated SVD projection, but C and D are only determined
    up to an invertible k×k matrix G (C G, G⁻¹ D): compare subspaces, never weights.

    Shape:
        input: (b, n). Output: (b, n).
    """

    def __init__(self, n_features: int, k: int, init_std: float | None = None) -> None:
        super().__init__()
        if not 0 < k <= n_features:
            raise ValueError(f"k must lie in 1..{n_features} (the number of input features), got {k}")
        std = init_std if init_std is not None else n_features**-0.5
        self.encoder = nn.Parameter(torch.randn(n_features, k) * std)
        self.decoder = nn.Parameter(torch.randn(k, n_features) * std)

    @property
    def k(self) -> int:
        return self.encoder.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z = x C, shape (b, k)."""
        return x @ self.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x) @ self.decoder

    def decoder_basis(self) -> torch.Tensor:
        """The spanning set Dᵀ (n×k) of the reconstructions' subspace."""
        return self.decoder.T
