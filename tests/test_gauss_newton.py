"""Gauss–Newton with SVRG for linear autoencoders: the steps' maths, the SVRG wiring, and what it buys."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from datamodules.base import ArrayDataModule
from lit_modules.components.subspace import principal_angles, top_right_singular_vectors
from optimizers.gauss_newton import (
    LinearAEGaussNewton,
    SVRGSnapshot,
    decoder_direction,
    decoder_gradient,
    encoder_direction,
)


def spectrum_matrix(singular_values: torch.Tensor, m: int = 600, seed: int = 0) -> torch.Tensor:
    """An m×n matrix U diag(s) Vᵀ with random orthonormal U, V and the given singular values."""
    g = torch.Generator().manual_seed(seed)
    n = len(singular_values)
    u = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    return ((u * singular_values.double()) @ v.T).float()


def test_a_full_decoder_step_is_the_least_squares_decoder():
    """η = 1 with the exact code covariance: D ← argmin_D ‖X − X C D‖², computed independently by lstsq."""
    g = torch.Generator().manual_seed(0)
    x, encoder, decoder = torch.randn(200, 12, generator=g), torch.randn(12, 3, generator=g), torch.randn(3, 12)
    codes = x @ encoder
    step = decoder_direction(codes.T @ codes / len(x), decoder_gradient(x, encoder, decoder), damping=0.0)
    expected = torch.linalg.lstsq(codes, x).solution
    torch.testing.assert_close(decoder - step, expected, rtol=1e-4, atol=1e-4)


def test_a_full_encoder_step_is_the_pseudo_inverse_of_the_decoder():
    g = torch.Generator().manual_seed(1)
    encoder, decoder = torch.randn(12, 3, generator=g), torch.randn(3, 12, generator=g)
    new_encoder = encoder - encoder_direction(encoder, decoder, damping=0.0)
    torch.testing.assert_close(new_encoder, torch.linalg.pinv(decoder), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decoder @ new_encoder, torch.eye(3), rtol=1e-4, atol=1e-5)


def test_gradient_of_the_mean_squared_error_matches_autograd():
    """decoder_gradient is (n/2) ∇_D of the mean squared error that the module trains on."""
    g = torch.Generator().manual_seed(2)
    x, encoder = torch.randn(30, 10, generator=g), torch.randn(10, 4, generator=g)
    decoder = torch.randn(4, 10, generator=g, requires_grad=True)
    torch.nn.functional.mse_loss(x @ encoder @ decoder, x).backward()
    torch.testing.assert_close(decoder.grad * 10 / 2, decoder_gradient(x, encoder, decoder.detach()))


def test_at_the_snapshot_the_variance_reduced_gradient_is_the_full_data_gradient():
    """SVRG: at (C, D) = (C̃, D̃) every batch's gradient equals the full-data one, so batch noise is gone there."""
    from lit_modules.linear_ae import LinearAE

    torch.manual_seed(0)
    x = torch.rand(96, 16)
    module = LinearAE(input_shape=(16,), k=4, sweep=(2,))
    module.refresh_snapshots([(x[:40],), (x[40:],)])
    ae = module.autoencoders["4"]
    full = decoder_gradient(x, ae.encoder.detach(), ae.decoder.detach())
    for batch in (x[:8], x[50:90]):
        module.zero_grad()
        losses, total = module.training_losses(batch)
        total.backward()
        torch.testing.assert_close(ae.decoder.grad * 16 / 2, full, rtol=1e-4, atol=1e-6)
        codes = batch @ ae.encoder
        torch.testing.assert_close(module.covariance_probes["4"].grad, codes.T @ codes / len(batch))
        assert ae.encoder.grad is None  # its Gauss–Newton step needs none
    plain = decoder_gradient(x[:8], ae.encoder.detach(), ae.decoder.detach())
    assert not torch.allclose(plain, full, atol=1e-3)  # the batch alone is a noisy estimate


def test_step_needs_the_code_covariance_and_rejects_bad_settings():
    encoder, decoder = torch.nn.Parameter(torch.randn(6, 2)), torch.nn.Parameter(torch.randn(2, 6))
    probe = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = LinearAEGaussNewton([(encoder, decoder, probe)])
    decoder.grad = torch.zeros_like(decoder)
    with pytest.raises(RuntimeError, match="covariance probe has no gradient"):
        optimizer.step()
    with pytest.raises(ValueError, match="momentum"):
        LinearAEGaussNewton([(encoder, decoder, probe)], momentum=1.0)
    with pytest.raises(ValueError, match=r"encoder \(n, k\), a decoder \(k, n\) and a probe \(k, k\)"):
        LinearAEGaussNewton([(encoder, torch.nn.Parameter(torch.randn(6, 2)), probe)])
    with pytest.raises(ValueError, match="at least one training batch"):
        SVRGSnapshot(6, 2).refresh(encoder.detach(), decoder.detach(), [])
    from lit_modules.linear_ae import LinearAE

    with pytest.raises(ValueError, match="optimizer must be one of"):
        LinearAE(input_shape=(16,), k=4, optimizer="lbfgs")


class NearTieData(ArrayDataModule):
    """Rows of a 1,200 × 24 matrix whose 4th and 5th singular values differ by 0.5 % (σ₄²/σ₅² = 1.01)."""

    input_shape = (24,)
    num_classes = 1
    class_names = ("x",)

    def load_arrays(self):
        s = torch.cat([torch.tensor([8.0, 6.0, 5.0, 4.0, 4.0 / 1.01**0.5]), torch.linspace(1.5, 0.1, 19)])
        x = spectrum_matrix(s, m=1200)
        return x, torch.zeros(len(x), dtype=torch.long), x[:100], torch.zeros(100, dtype=torch.long)


def trained_angle(optimizer: str, lr: float, epochs: int) -> tuple[float, float]:
    from lit_modules.linear_ae import LinearAE

    torch.manual_seed(0)
    data = NearTieData(batch_size=32, val_fraction=0.05)
    module = LinearAE(input_shape=(24,), k=4, sweep=(), optimizer=optimizer, lr=lr)
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, data)
    x = data.train_set.tensors[0]
    basis = top_right_singular_vectors(x.double(), 4)
    ae = module.autoencoders["4"]
    ratio = (ae(x) - x).pow(2).sum() / (x - x @ basis.float() @ basis.T.float()).pow(2).sum()
    return math.degrees(principal_angles(ae.decoder_basis().detach(), basis).max()), ratio.item()


def test_gauss_newton_finds_a_nearly_tied_subspace_that_adam_does_not_in_the_same_epochs():
    """With σ₄²/σ₅² = 1.01 both optimisers reach the SVD's error; only Gauss–Newton also reaches its subspace."""
    angle, ratio = trained_angle("gauss_newton", lr=0.1, epochs=40)  # measured: 0.24°
    assert angle <= 1.0 and ratio <= 1.001
    adam_angle, adam_ratio = trained_angle("adam", lr=1e-2, epochs=40)  # measured: 3.9°
    assert adam_ratio <= 1.01 and adam_angle > 2.0
