"""Smoothed cross-entropy, center loss, triplet ranking loss and the frequency class weights, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from losses import (
    CenterLoss,
    ClassificationLoss,
    center_distance,
    frequency_class_weights,
    smoothed_cross_entropy,
    triplet_ranking_loss,
)


def _log_softmax_by_hand(row: list[float]) -> list[float]:
    total = sum(math.exp(v) for v in row)
    return [v - math.log(total) for v in row]


def test_smoothed_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([0, 1])
    expected = []
    for row, t in zip(logits.tolist(), targets.tolist()):
        log_p = _log_softmax_by_hand(row)
        expected.append(0.9 * -log_p[t] + 0.1 * -sum(log_p) / 3)
    got = smoothed_cross_entropy(logits, targets, epsilon=0.1)
    assert got.item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    # epsilon = 0 is plain cross-entropy.
    plain = torch.nn.functional.cross_entropy(logits, targets)
    assert smoothed_cross_entropy(logits, targets, epsilon=0.0).item() == pytest.approx(plain.item(), rel=1e-6)


def test_smoothed_cross_entropy_class_weights_scale_each_sample_keras_style():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 0])
    nll0 = -_log_softmax_by_hand([1.0, 0.0])[0]
    nll1 = -_log_softmax_by_hand([0.0, 1.0])[0]
    weights = torch.tensor([3.0, 1.0])
    # Both samples are class 0 (weight 3): the mean is 3x the unweighted one, not renormalised.
    got = smoothed_cross_entropy(logits, targets, epsilon=0.0, class_weights=weights)
    assert got.item() == pytest.approx(3 * (nll0 + nll1) / 2, rel=1e-6)


def test_smoothed_cross_entropy_stays_finite_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float16)
    value = smoothed_cross_entropy(logits, torch.tensor([0]))
    assert torch.isfinite(value)
    # -log p of the two others are ~1e4 and 2e4: the uniform part is (0 + 2e4 + 1e4)/3 = 1e4, times 0.1.
    assert value.item() == pytest.approx(1000.0, rel=1e-3)


def test_center_loss_by_hand_and_centres_learn():
    features = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]])
    centers = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([0, 1, 0])
    # ||(1,1)||^2 = 2, ||(-1,-2)||^2 = 5, ||(3,-1)||^2 = 10 -> mean 17/3
    assert center_distance(features, centers, targets).item() == pytest.approx(17 / 3)
    module = CenterLoss(2, 2)
    with torch.no_grad():
        module.centers.copy_(centers)
    loss = module(features, targets)
    loss.backward()
    # d/dc_0 = -2/B * sum over its samples (x - c_0) = -2/3 * ((1,1) + (3,-1)) = (-8/3, 0)
    assert module.centers.grad[0].tolist() == pytest.approx([-8 / 3, 0.0])
    assert module.centers.grad[1].tolist() == pytest.approx([2 / 3, 4 / 3])


def test_classification_loss_center_adds_lambda_times_distance():
    logits = torch.tensor([[1.0, -1.0]])
    features = torch.tensor([[2.0, 0.0]])
    criterion = ClassificationLoss("center", num_classes=2, feature_dim=2, center_weight=0.2)
    total, terms = criterion(logits, torch.tensor([0]), features)
    ce = -_log_softmax_by_hand([1.0, -1.0])[0]
    assert total.item() == pytest.approx(ce + 0.2 * 4.0, rel=1e-6)
    assert set(terms) == {"ce", "center"}
    assert [p.shape for p in criterion.parameters()] == [torch.Size([2, 2])]


def test_classification_loss_rejects_unknown_kind_and_missing_features():
    with pytest.raises(ValueError, match="loss must be one of"):
        ClassificationLoss("hinge", num_classes=3)
    with pytest.raises(ValueError, match="feature dimension"):
        ClassificationLoss("center", num_classes=3)
    criterion = ClassificationLoss("center", num_classes=2, feature_dim=2)
    with pytest.raises(ValueError, match="needs the features"):
        criterion(torch.zeros(1, 2), torch.tensor([0]))


def test_triplet_ranking_loss_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # Sample 0: cos+ = 1/sqrt2, cos- = 0 -> max(0, 0.1 - 0.7071) = 0.
    # Sample 1: cos+ = 1, cos- = 1/sqrt2 -> max(0, 0.1 + 0.7071 - 1) = 0.
    assert triplet_ranking_loss(q, pos, neg).item() == pytest.approx(0.0)
    # Swap the answers of sample 0: max(0, 0.1 + 0.7071 - 0) = 0.8071.
    swapped = triplet_ranking_loss(q[:1], neg[:1], pos[:1])
    assert swapped.item() == pytest.approx(0.1 + 1 / math.sqrt(2))


def test_frequency_class_weights_follow_the_formula():
    ranks = torch.tensor([0, 1, 2, 3])
    raw = [((4 - k) / 4 + 1) ** 3 for k in range(4)]
    mean = sum(raw) / 4
    assert frequency_class_weights(ranks).tolist() == pytest.approx([r / mean for r in raw])
    weights = frequency_class_weights(torch.arange(3062))
    assert weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert (weights[0] / weights[-1]).item() == pytest.approx(8.0, rel=1e-2)
    # A rank permutation permutes the weights.
    assert frequency_class_weights(torch.tensor([2, 0, 1])).tolist() == pytest.approx(
        frequency_class_weights(torch.tensor([0, 1, 2]))[[2, 0, 1]].tolist()
    )
