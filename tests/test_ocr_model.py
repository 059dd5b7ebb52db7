"""``ocr_cnn``: SPEC §1's network, its frequency class weights and selectable losses; training runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_modules.cnn_baseline import CNNBaseline
from lit_modules.ocr_cnn import OCRCNN


def test_network_is_the_spec_layer_stack_with_its_parameter_count():
    model = OCRCNN(num_classes=3062)
    kinds = [type(m) for m in [*model.features, *model.hidden, *model.classifier]]
    assert kinds == [
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Dropout,
        nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Flatten,
        nn.Linear, nn.ReLU, nn.Dropout, nn.Linear,
    ]  # fmt: skip
    dropouts = [m.p for m in [*model.features, *model.classifier] if isinstance(m, nn.Dropout)]
    assert dropouts == [0.25, 0.25, 0.5]
    # 48 -conv4-> 45 -pool-> 22 -conv4-> 19 -pool-> 9: 64 * 9 * 9 = 5184 inputs to the dense layer.
    expected = (16 * 64 + 64) + (64 * 64 * 16 + 64) + (5184 * 1024 + 1024) + (1024 * 3062 + 3062)
    assert model.num_parameters() == expected
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 3062)


def test_frequency_weights_follow_the_ranks_and_can_be_switched_off():
    ranks = [2, 0, 1, 3]
    model = OCRCNN(num_classes=4, class_frequency_ranks=ranks)
    raw = torch.tensor([((4 - r) / 4 + 1) ** 3 for r in ranks])
    assert torch.allclose(model.criterion.class_weights, raw / raw.mean())
    assert OCRCNN(num_classes=4, frequency_weights=False).criterion.class_weights is None
    with pytest.raises(ValueError, match="ranks"):
        OCRCNN(num_classes=4, class_frequency_ranks=[0, 1])
    with pytest.raises(ValueError, match="class_names"):
        OCRCNN(num_classes=4, class_names=["a", "b"])


@pytest.mark.parametrize("loss", ["cross_entropy", "smoothed_cross_entropy", "center"])
def test_each_loss_matches_its_formula_on_the_model(loss):
    torch.manual_seed(0)
    model = OCRCNN(num_classes=5, hidden=16, loss=loss).eval()  # eval: no dropout, same features twice
    if loss == "center":
        with torch.no_grad():
            model.criterion.center.centers.normal_()
    x, y = torch.rand(6, 1, 48, 48), torch.tensor([0, 1, 2, 3, 4, 0])
    total, logits, terms = model.loss(x, y)
    features = model.embed(x)
    weights = model.criterion.class_weights[y]
    log_p = F.log_softmax(logits, dim=1)
    nll = -log_p[torch.arange(6), y]
    if loss == "smoothed_cross_entropy":
        nll = 0.9 * nll + 0.1 * -log_p.mean(dim=1)
    expected = (weights * nll).mean()
    if loss == "center":
        centers = model.criterion.center.centers
        expected = expected + 0.2 * ((features - centers[y]) ** 2).sum(dim=1).mean()
        assert set(terms) == {"ce", "center"}
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_center_loss_centres_are_trained_by_the_models_optimiser():
    model = OCRCNN(num_classes=3, hidden=8, loss="center")
    centres = model.criterion.center.centers
    assert any(p is centres for p in model.parameters())
    before = centres.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.loss(torch.rand(4, 1, 48, 48), torch.tensor([0, 1, 2, 0]))[0].backward()
    optimizer.step()
    assert not torch.equal(before, centres.detach())


def test_cnn_baseline_takes_the_same_loss_option_and_keeps_cross_entropy_by_default():
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    plain = CNNBaseline(input_shape=(1, 8, 8), num_classes=3).eval()
    loss, logits, terms = plain.loss(x, y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6) and terms == {}
    center = CNNBaseline(input_shape=(1, 8, 8), num_classes=3, loss="center")
    assert set(center.loss(x, y)[2]) == {"ce", "center"}
    assert set(center.state_dict()) - set(plain.state_dict()) == {"criterion.center.centers"}
