"""Margin and spread losses against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from losses.margin import margin_loss
from losses.spread import spread_loss, spread_margin


def test_margin_loss_by_hand():
    lengths = torch.tensor([[0.95, 0.30, 0.05], [0.50, 0.80, 0.10]])
    targets = torch.tensor([0, 2])
    # Sample 0: target 0.95 >= 0.9 -> 0; absent 0.30 -> 0.5 * 0.2^2 = 0.02; absent 0.05 -> 0.
    # Sample 1: target 0.10 -> (0.9 - 0.1)^2 = 0.64; absent 0.50 -> 0.5 * 0.4^2 = 0.08;
    #           absent 0.80 -> 0.5 * 0.7^2 = 0.245.
    expected = (0.02 + (0.64 + 0.08 + 0.245)) / 2
    assert margin_loss(lengths, targets).item() == pytest.approx(expected)
    # Su's lambda = 0.25 only reweights the absent classes.
    expected_su = (0.01 + (0.64 + 0.04 + 0.1225)) / 2
    assert margin_loss(lengths, targets, lam=0.25).item() == pytest.approx(expected_su)


def test_margin_loss_multi_hot_targets_for_two_digits():
    lengths = torch.tensor([[0.85, 0.95, 0.20]])
    two_hot = torch.tensor([[1.0, 1.0, 0.0]])
    # (0.9 - 0.85)^2 + 0 + 0.5 * (0.2 - 0.1)^2
    assert margin_loss(lengths, two_hot).item() == pytest.approx(0.0025 + 0.005)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert margin_loss(lengths, one_hot).item() == pytest.approx(margin_loss(lengths, torch.tensor([1])).item())


def test_margin_loss_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="targets must be"):
        margin_loss(torch.rand(2, 3), torch.rand(2, 4))


def test_spread_loss_by_hand():
    activations = torch.tensor([[0.9, 0.2, 0.75], [0.1, 0.6, 0.5]])
    targets = torch.tensor([0, 2])
    margin = 0.4
    # Sample 0: a_t = 0.9; i=1: max(0, 0.4 - 0.7) = 0; i=2: max(0, 0.4 - 0.15) = 0.25 -> 0.0625.
    # Sample 1: a_t = 0.5; i=0: 0.4 - 0.4 = 0 -> 0; i=1: 0.4 + 0.1 = 0.5 -> 0.25.
    assert spread_loss(activations, targets, margin).item() == pytest.approx((0.0625 + 0.25) / 2)


def test_spread_loss_excludes_the_target_and_has_gradients():
    activations = torch.tensor([[0.5, 0.5]], requires_grad=True)
    loss = spread_loss(activations, torch.tensor([1]), 0.2)
    assert loss.item() == pytest.approx(0.04)  # only i = 0 counts, not the target itself
    loss.backward()
    torch.testing.assert_close(activations.grad, torch.tensor([[0.4, -0.4]]))


def test_spread_margin_schedule():
    assert spread_margin(0.0) == pytest.approx(0.2)
    assert spread_margin(0.5) == pytest.approx(0.55)
    assert spread_margin(1.0) == pytest.approx(0.9)
    assert spread_margin(3.0) == pytest.approx(0.9)
    assert spread_margin(-1.0) == pytest.approx(0.2)
    assert spread_margin(0.5, start=0.1, end=0.3) == pytest.approx(0.2)
