"""How many dimensions a word embedding needs: the n > 8.33·ln N rule (SPEC §8; kexue.fm/archives/7695, 8711).

A skip-gram model p(w_i, w_j) = exp⟨u_i, v_j⟩ / Z over a vocabulary of N words, with vectors spread
uniformly on the sphere of radius √n, has entropy H ≈ 2·ln N + h_n. For the model to be able to put
all its mass on the observed pairs (H < 0) the dimension must satisfy 2·ln N + h_n < 0. Since
h_n ≈ −0.2406·n (Laplace's method), that is n > 8.31·ln N, quoted as 8.33·ln N.

Pure NumPy/SciPy; no torch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

# 2 / 0.24: the closed form quoted with the rule (Laplace's method gives 2 / 0.2406 = 8.31).
CLOSED_FORM_FACTOR = 8.33
_GRID = 200_001  # points on (0, π); h_n agrees with a grid ten times coarser to 1e-12 for n ≤ 4096


def h_n(n: int, grid: int = _GRID) -> float:
    """The entropy correction h_n for vectors uniform on the n-sphere of radius √n.

    h_n = log E[e^{n cos θ}] − E[e^{n cos θ} · n cos θ] / E[e^{n cos θ}], with θ the angle between two
    independent uniform directions, whose density is ∝ sin^{n−2} θ on [0, π].

    Every expectation is a ratio of two integrals over the same grid, so the grid spacing cancels and
    each is taken in log space: with g(θ) = (n−2)·log sin θ and f(θ) = g(θ) + n cos θ,
    log E[e^{n cos θ}] = LSE(f) − LSE(g) and the second term is Σ softmax(f)·n cos θ. Nothing is
    exponentiated before the maximum is subtracted, so n = 4096 (e^{4096} alone overflows) is exact.

    Args:
        n: the dimension, at least 2.
        grid: interior points of the uniform grid on (0, π).

    Returns:
        h_n (negative; about −0.2406·n for large n).
    """
    if int(n) != n or n < 2:
        raise ValueError(f"the dimension n must be an integer of at least 2, got {n}")
    theta = np.linspace(0.0, math.pi, grid + 2)[1:-1]
    log_density = (n - 2) * np.log(np.sin(theta))
    n_cos = n * np.cos(theta)
    f = log_density + n_cos
    weights = np.exp(f - f.max())
    weights /= weights.sum()
    return float(logsumexp(f) - logsumexp(log_density) - np.dot(weights, n_cos))


def entropy_bound(vocabulary: int, n: int) -> float:
    """H ≈ 2·ln N + h_n: the skip-gram model's entropy at dimension ``n`` for ``vocabulary`` = N words."""
    return 2.0 * math.log(vocabulary) + h_n(n)


def min_embedding_dim(vocabulary: int, max_dim: int = 65_536) -> int:
    """The smallest n with 2·ln N + h_n < 0, found by bisection (h_n decreases with n).

    Args:
        vocabulary: N, the number of distinct words (at least 2).
        max_dim: search limit.

    Returns:
        The minimum dimension: 96 for N = 100,000 and 128 for N = 5,000,000.
    """
    if int(vocabulary) != vocabulary or vocabulary < 2:
        raise ValueError(f"the vocabulary size N must be an integer of at least 2, got {vocabulary}")
    low, high = 2, max_dim
    if entropy_bound(vocabulary, high) >= 0:
        raise ValueError(f"no dimension up to {max_dim} satisfies 2·ln N + h_n < 0 for N = {vocabulary}")
    while low < high:  # invariant: the answer lies in [low, high]
        mid = (low + high) // 2
        if entropy_bound(vocabulary, mid) < 0:
            high = mid
        else:
            low = mid + 1
    return low


def closed_form_dim(vocabulary: int) -> float:
    """The rule of thumb n > 8.33·ln N."""
    return CLOSED_FORM_FACTOR * math.log(vocabulary)
