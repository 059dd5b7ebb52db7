"""Truncated SVD and subspace comparison: the baseline a linear autoencoder must match.

Eckart–Young: the best rank-k approximation of M (m×n) in Frobenius norm is U_k Σ_k V_kᵀ,
i.e. the projection M V_k V_kᵀ onto the top-k right singular subspace.
"""

from __future__ import annotations

import torch

SVD_METHODS = ("full", "lowrank")


def top_right_singular_vectors(matrix: torch.Tensor, k: int, method: str = "full", seed: int = 0) -> torch.Tensor:
    """The top-``k`` right singular vectors V_k of ``matrix``.

    ``full`` uses ``torch.linalg.svd``; ``lowrank`` the randomised ``torch.svd_lowrank``
    (Halko et al. 2011; 4 power iterations), which is approximate but fast when k ≪ n.

    Shape:
        matrix: (m, n). Returns (n, k) with orthonormal columns.
    """
    if method == "full":
        return torch.linalg.svd(matrix, full_matrices=False).Vh[:k].T
    if method == "lowrank":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(matrix, q=min(k + 10, min(matrix.shape)), niter=4)
        return v[:, :k]
    raise ValueError(f"unknown SVD method '{method}'; choose one of {SVD_METHODS}")


def project(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """x ↦ x B Bᵀ, the orthogonal projection onto span(B).

    Shape:
        x: (b, n); basis: (n, k) with orthonormal columns. Returns (b, n).
    """
    return (x @ basis) @ basis.T


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles θ₁ ≤ … ≤ θ_k (radians) between span(a) and span(b).

    With Q_a, Q_b orthonormal bases, cos θ_i are the singular values of Q_aᵀ Q_b (Björck & Golub 1973).
    Computed in float64 so that angles of a few hundredths of a degree are resolved.

    Shape:
        a: (n, k); b: (n, k) (columns need not be orthonormal). Returns (k,).
    """
    qa = torch.linalg.qr(a.double()).Q
    qb = torch.linalg.qr(b.double()).Q
    cosines = torch.linalg.svdvals(qa.T @ qb).clamp(-1.0, 1.0)
    return torch.arccos(cosines)
