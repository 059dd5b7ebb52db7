"""Linear autoencoder versus truncated SVD: the maths, and the module's metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from lit_modules.components.linear_autoencoder import LinearAutoencoder
from lit_modules.components.subspace import principal_angles, project, top_right_singular_vectors


def gapped_matrix(m: int = 400, n: int = 30, k: int = 5, seed: int = 0) -> torch.Tensor:
    """A matrix whose singular values drop clearly after the k-th (10 … 6, then 1 … 0.1)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    s = torch.cat([torch.linspace(10, 6, k), torch.linspace(1, 0.1, n - k)]).double()
    return (u * s) @ v.T


def test_principal_angles_match_scipy():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randn(12, 4, generator=g, dtype=torch.float64)
    ours = principal_angles(a, b).numpy()
    reference = np.sort(subspace_angles(a.numpy(), b.numpy()))
    np.testing.assert_allclose(ours, reference, atol=1e-10)
    assert principal_angles(a, a @ torch.randn(4, 4, generator=g, dtype=torch.float64)).max() < 1e-6


def test_full_and_lowrank_svd_agree_and_reach_eckart_young():
    x = gapped_matrix()
    v_full = top_right_singular_vectors(x, 5, "full")
    v_low = top_right_singular_vectors(x, 5, "lowrank")
    assert math.degrees(principal_angles(v_full, v_low).max()) < 0.1
    s = torch.linalg.svdvals(x)
    best_error = (x - project(x, v_full)).pow(2).sum()
    assert torch.isclose(best_error, s[5:].pow(2).sum())  # Eckart–Young: the tail of the spectrum
    with pytest.raises(ValueError, match="unknown SVD method"):
        top_right_singular_vectors(x, 5, "qr")


def test_trained_linear_autoencoder_equals_truncated_svd():
    """Mini-batch training reaches the SVD: error ratio ≤ 1.01 and largest principal angle ≤ 2°."""
    torch.manual_seed(0)
    x = gapped_matrix().float()
    k = 5
    ae = LinearAutoencoder(x.shape[1], k)
    optimizer = torch.optim.Adam(ae.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3000, eta_min=1e-4)
    for _ in range(3000):
        batch = x[torch.randint(0, len(x), (64,))]
        loss = (ae(batch) - batch).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    v = top_right_singular_vectors(x.double(), k)
    ratio = (ae(x) - x).pow(2).sum() / (project(x.double(), v) - x.double()).pow(2).sum()
    angle = math.degrees(principal_angles(ae.decoder_basis().detach(), v).max())
    assert 1 - 1e-4 <= ratio <= 1.01
    assert angle <= 2.0


def test_autoencoder_is_identified_only_up_to_an_invertible_map():
    ae = LinearAutoencoder(10, 3)
    g = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
    other = LinearAutoencoder(10, 3)
    with torch.no_grad():
        other.encoder.copy_(ae.encoder @ g)
        other.decoder.copy_(torch.linalg.inv(g) @ ae.decoder)
    x = torch.randn(7, 10)
    assert torch.allclose(ae(x), other(x), atol=1e-5)
    assert principal_angles(ae.decoder_basis().detach(), other.decoder_basis().detach()).max() < 1e-3


def test_module_metrics_equal_direct_computation():
    from lit_modules.linear_ae import LinearAE

    torch.manual_seed(0)
    x = gapped_matrix(m=64, n=16, k=3).float()
    module = LinearAE(input_shape=(16,), k=3, sweep=(2,))
    module.fit_svd_baseline([(x[:32],), (x[32:],)])
    for batch in (x[:20], x[20:]):
        module._evaluate((batch,), "test")
    ae_err = (module.autoencoders["3"](x) - x).pow(2).mean()
    svd_err = (project(x, module.singular_vectors[:, :3]) - x).pow(2).mean()
    ratio = module.mse["test_ae_3"].compute() / module.mse["test_svd_3"].compute()
    assert torch.isclose(ratio, ae_err / svd_err, rtol=1e-5)
    assert module.ks == [2, 3]


def test_k_larger_than_features_is_rejected():
    from lit_modules.linear_ae import LinearAE

    with pytest.raises(ValueError, match="k must lie in 1..64"):
        LinearAE(input_shape=(1, 8, 8), k=65)
