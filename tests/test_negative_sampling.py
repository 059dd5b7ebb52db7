"""Skip-gram losses against values computed by hand from their equations."""

from __future__ import annotations

import math

import pytest
import torch

from losses.negative_sampling import (
    full_softmax_loss,
    fused_negative_sampling_loss,
    negative_sampling_loss,
    noise_distribution,
)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_negative_sampling_loss_equals_a_hand_computed_value():
    u = torch.tensor([[1.0, 2.0]])
    v = torch.tensor([[0.5, -0.25]])  # ⟨u, v⟩ = 0
    noise = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # ⟨u, n⟩ = 1, 2
    expected = -_log_sigmoid(0.0) - _log_sigmoid(-1.0) - _log_sigmoid(-2.0)
    assert negative_sampling_loss(u, v, noise).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(math.log(2) + math.log1p(math.e) + math.log1p(math.e**2), rel=1e-12)


def test_negative_sampling_loss_is_per_pair_and_stays_finite_for_large_scores():
    torch.manual_seed(0)
    u, v, n = torch.randn(5, 8) * 30, torch.randn(5, 8) * 30, torch.randn(5, 3, 8) * 30
    loss = negative_sampling_loss(u, v, n)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    for b in range(5):  # a loop written from the equation
        ref = -torch.nn.functional.logsigmoid(u[b] @ v[b])
        ref = ref - sum(torch.nn.functional.logsigmoid(-(u[b] @ n[b, k])) for k in range(3))
        assert loss[b].item() == pytest.approx(ref.item(), rel=1e-5)


def test_full_softmax_loss_equals_the_log_of_the_normalised_exponential():
    u = torch.tensor([[1.0, 0.0]])
    vocab = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # scores 1, 0, -1
    expected = -(1.0 - math.log(math.e + 1.0 + math.exp(-1.0)))
    assert full_softmax_loss(u, torch.tensor([0]), vocab).item() == pytest.approx(expected, rel=1e-6)


def test_noise_distribution_is_the_unigram_to_the_three_quarters():
    p = noise_distribution(torch.tensor([16, 1, 0]))
    assert p.tolist() == pytest.approx([8 / 9, 1 / 9, 0.0])
    with pytest.raises(ValueError, match="all zero"):
        noise_distribution(torch.zeros(3))


def test_fused_loss_has_the_values_and_gradients_of_the_plain_one():
    torch.manual_seed(1)
    u = (torch.randn(6, 4, dtype=torch.float64) * 3).requires_grad_()
    outputs = (torch.randn(6, 4, 4, dtype=torch.float64) * 3).requires_grad_()  # context + 3 noise words
    weights = torch.rand(6, dtype=torch.float64)  # a non-uniform upstream gradient
    plain = negative_sampling_loss(u, outputs[:, 0], outputs[:, 1:])
    grads_plain = torch.autograd.grad((plain * weights).sum(), (u, outputs))
    fused = fused_negative_sampling_loss(u, outputs)
    grads_fused = torch.autograd.grad((fused * weights).sum(), (u, outputs))
    assert torch.allclose(fused, plain, rtol=1e-12)
    for a, b in zip(grads_fused, grads_plain):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(fused_negative_sampling_loss, (u, outputs))


def test_fused_loss_equals_the_hand_computed_value():
    u = torch.tensor([[1.0, 2.0]])
    outputs = torch.tensor([[[0.5, -0.25], [1.0, 0.0], [0.0, 1.0]]])  # scores 0, 1, 2
    expected = math.log(2) + math.log1p(math.e) + math.log1p(math.e**2)
    assert fused_negative_sampling_loss(u, outputs).item() == pytest.approx(expected, rel=1e-6)
