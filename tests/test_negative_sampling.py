"""Skip-gram losses against values computed by hand from their equations."""

from __future__ import annotations

import math

import pytest
import torch

from losses.negative_sampling import (
    alias_sample,
    alias_table,
    full_softmax_loss,
    fused_negative_sampling_loss,
    negative_sampling_loss,
    noise_distribution,
    shared_noise_negative_sampling_loss,
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


def test_shared_noise_loss_is_each_pair_s_loss_with_its_group_s_noise_words():
    torch.manual_seed(3)
    group = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])  # 4 centre words with 3, 1, 2 and 4 pairs
    u = (torch.randn(4, 5, dtype=torch.float64) * 2).requires_grad_()
    outputs = (torch.randn(10 + 4 * 3, 5, dtype=torch.float64) * 2).requires_grad_()  # 10 contexts, 3 noise per group
    weights = torch.rand(10, dtype=torch.float64)
    shared = shared_noise_negative_sampling_loss(u, outputs, group)
    noise = outputs[10:].view(4, 3, 5)
    plain = negative_sampling_loss(u[group], outputs[:10], noise[group])
    assert torch.allclose(shared, plain, rtol=1e-12)
    grads_shared = torch.autograd.grad((shared * weights).sum(), (u, outputs))
    grads_plain = torch.autograd.grad((plain * weights).sum(), (u, outputs))
    for a, b in zip(grads_shared, grads_plain):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: shared_noise_negative_sampling_loss(a, b, group), (u, outputs))
    with pytest.raises(ValueError, match="K rows per group"):
        shared_noise_negative_sampling_loss(u, outputs[:-1], group)


def test_shared_noise_loss_with_groups_of_one_is_the_fused_loss():
    torch.manual_seed(4)
    u, outputs = torch.randn(6, 4, dtype=torch.float64), torch.randn(6 + 6 * 2, 4, dtype=torch.float64)
    per_pair = torch.cat((outputs[:6, None], outputs[6:].view(6, 2, 4)), dim=1)
    assert torch.allclose(shared_noise_negative_sampling_loss(u, outputs, torch.arange(6)),
                          fused_negative_sampling_loss(u, per_pair), rtol=1e-12)


def test_alias_table_draws_the_distribution_and_never_a_word_of_probability_zero():
    p = torch.tensor([0.5, 0.0, 0.2, 0.2, 0.05, 0.05], dtype=torch.float64)
    accept, alias = alias_table(p)
    # column i keeps word i with accept[i], else gives alias[i]: the table holds p exactly
    exact = (accept + torch.zeros(6, dtype=torch.float64).index_add_(0, alias, 1 - accept)) / 6
    assert torch.allclose(exact, p, atol=1e-12)
    draws = alias_sample(accept, alias, (200_000,), torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=6).double() / len(draws)
    assert frequencies[1] == 0
    assert torch.allclose(frequencies, p, atol=4 * math.sqrt(0.25 / len(draws)))  # 4 standard errors at most
    with pytest.raises(ValueError, match="non-empty 1-D vector"):
        alias_table(torch.tensor([0.5, -0.1]))
