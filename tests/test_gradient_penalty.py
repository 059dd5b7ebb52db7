"""The WGAN-GP penalty and losses against an independent per-sample computation and known cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losses.gradient_penalty import gradient_penalty, gradient_penalty_at, penalty_from_gradients, random_interpolates
from losses.wasserstein import critic_loss, generator_loss, wasserstein_estimate


def small_critic() -> nn.Module:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))
    with torch.no_grad():
        critic[-1].weight.mul_(4.0)  # gradient norms on both sides of 1, so both forms are exercised
    return critic


def per_sample_reference(critic, real, fake, eps, weight, form):
    """One sample at a time, straight from the equation: λ·mean_b f(‖∇_x D(x)‖ at x̂_b over the whole sample)."""
    total = 0.0
    for b in range(real.shape[0]):
        x_hat = (eps[b] * real[b] + (1 - eps[b]) * fake[b]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
        norm = torch.sqrt((grad.double() ** 2).sum())
        total += float((norm - 1) ** 2) if form == "two_sided" else max(0.0, float(norm - 1))
    return weight * total / real.shape[0]


@pytest.mark.parametrize("form", ["two_sided", "one_sided"])
def test_penalty_equals_a_per_sample_loop(form):
    critic = small_critic()
    real, fake = torch.randn(6, 2, 5, 5), torch.randn(6, 2, 5, 5)
    penalty = gradient_penalty(critic, real, fake, weight=10.0, form=form, generator=torch.Generator().manual_seed(3))
    eps = torch.rand(6, generator=torch.Generator().manual_seed(3))  # the same draw, one ε per sample
    expected = per_sample_reference(critic, real, fake, eps, 10.0, form)
    assert expected > 0
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_penalty_is_zero_for_a_linear_critic_with_unit_norm_weight():
    weight = torch.randn(3 * 4 * 4)
    weight /= weight.norm()
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    with torch.no_grad():
        critic[1].weight.copy_(weight.unsqueeze(0))
    real, fake = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    for form in ("two_sided", "one_sided"):
        assert gradient_penalty(critic, real, fake, form=form).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic[1].weight.mul_(2.0)  # gradient norm 2 everywhere: (2 − 1)² = 1 and relu(2 − 1) = 1
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10.0, rel=1e-5)
    assert gradient_penalty(critic, real, fake, weight=10.0, form="one_sided").item() == pytest.approx(10.0, rel=1e-5)


def test_norm_over_channels_only_is_a_different_penalty():
    """The widespread bug: ``grad.norm(2, dim=1)`` on images gives one norm per pixel, not per sample."""
    critic = small_critic()
    real, fake = torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5)
    x_hat = random_interpolates(real, fake, torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    buggy = ((grad.norm(2, dim=1) - 1) ** 2).mean()
    right = penalty_from_gradients(grad)
    assert right.item() == pytest.approx(((grad.flatten(1).norm(dim=1) - 1) ** 2).mean().item())
    assert abs(buggy.item() - right.item()) > 0.1 * right.item()


def test_penalty_reaches_the_critic_weights_and_a_loss_scale_changes_nothing():
    critic = small_critic()
    real, fake = torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5)
    x_hat = random_interpolates(real, fake, torch.Generator().manual_seed(1))
    plain = gradient_penalty_at(critic(x_hat), x_hat)
    scaled = gradient_penalty_at(critic(x_hat), x_hat, grad_scale=65536.0)
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-5)
    plain.backward()  # create_graph=True: the double backward gives the critic's weights a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters() if p.dim() > 1)


def test_interpolates_lie_on_the_segment_with_one_eps_per_sample():
    real, fake = torch.zeros(5, 3, 2, 2), torch.ones(5, 3, 2, 2)
    x_hat = random_interpolates(real, fake)
    assert x_hat.requires_grad and x_hat.is_leaf
    per_sample = x_hat.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # one ε for the whole sample
    assert per_sample[:, 0].unique().numel() == 5 and ((0 <= per_sample) & (per_sample <= 1)).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="penalty form must be one of"):
        penalty_from_gradients(torch.ones(2, 3), "both")
    with pytest.raises(ValueError, match="same shape"):
        random_interpolates(torch.ones(2, 3), torch.ones(3, 3))


def test_wasserstein_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert critic_loss(real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert wasserstein_estimate(real, fake).item() == pytest.approx(2.5)
    assert generator_loss(fake).item() == pytest.approx(0.5)
