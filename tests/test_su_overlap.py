"""Su's overlap experiment: the stacked test, his fully convolutional networks, the margin-loss CNN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule
from torch import nn

from evaluation.overlap import (
    combine,
    confident_top2_hits,
    overlap_test,
    score_overlaps,
    stack,
    takes_input,
)
from lit_modules.capsule import CapsNet
from lit_modules.cnn_baseline import CNNBaseline
from lit_modules.components.capsules.dynamic_routing import su_routing
from lit_modules.components.su_convnet import SuConvFrontEnd, positions_as_capsules
from losses.margin import margin_loss

SU_CAPSULE = dict(frontend="su", frontend_channels=(4, 6), shared_weights=True, routing="su", decoder=False)
SU_CNN = dict(features="su", frontend_channels=(4, 6), hidden=8, dropout=0.0, loss="margin", margin_lambda=0.25)


def class_images(labels: torch.Tensor, side: int = 2) -> torch.Tensor:
    """Class ``c`` lights pixel ``c`` of a ``side``×``side`` image."""
    images = torch.zeros(len(labels), 1, side, side)
    images.view(len(labels), -1)[torch.arange(len(labels)), labels] = 1.0
    return images


class BlockOracle(LightningModule):
    """Scores class c by the brightest pixel c over the 2×2 blocks of the input, stacked or not: both
    classes of a pair score 1, the others 0."""

    scores_are_probabilities = True

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        blocks = x.unfold(2, 2, 2).unfold(3, 2, 2)  # (B, C, H/2, W/2, 2, 2)
        return blocks.flatten(4).amax(dim=(1, 2, 3)) + self.anchor


class FixedClass(BlockOracle):
    """Always ranks class 0 first and class 1 second, whatever it is shown."""

    def forward(self, x):
        return torch.tensor([0.9, 0.8, 0.1, 0.0]).expand(len(x), 4) + self.anchor


def test_stack_puts_the_first_image_above_the_second():
    images = torch.rand(6, 1, 4, 3)
    pairs = torch.tensor([[0, 5], [2, 3], [4, 1]])
    out = stack(images, pairs)
    assert out.shape == (3, 1, 8, 3)
    for k, (a, b) in enumerate(pairs.tolist()):
        assert torch.equal(out[k, :, :4], images[a]) and torch.equal(out[k, :, 4:], images[b])
    assert torch.equal(combine(images, pairs, "stack"), out)
    assert torch.equal(combine(images, pairs, "max"), torch.maximum(images[pairs[:, 0]], images[pairs[:, 1]]))
    with pytest.raises(ValueError, match="mode must be one of"):
        combine(images, pairs, "sum")


@pytest.mark.parametrize("mode", ["stack", "max"])
def test_true_pair_scores_everything_and_a_fixed_class_nothing(mode):
    labels = 1 + torch.arange(60) % 3  # classes 1..3 of 4: class 0 is never in a pair
    images = class_images(labels)
    scored = score_overlaps(BlockOracle(), images, labels, num_pairs=200, seed=1, mode=mode)
    expected_shape = (200, 1, 4, 2) if mode == "stack" else (200, 1, 2, 2)
    assert scored["overlays"].shape == expected_shape
    pair_labels = labels[scored["pairs"]]
    assert (pair_labels[:, 0] != pair_labels[:, 1]).all()
    assert overlap_test(BlockOracle(), images, labels, 200, seed=1, mode=mode) == {
        "top2_pair": 1.0,
        "top2_confident": 1.0,
        "top1_in_pair": 1.0,
        "single_acc": 1.0,
    }
    fixed = overlap_test(FixedClass(), images, labels, 200, seed=1, mode=mode)
    assert fixed["top2_pair"] == 0.0 and fixed["top2_confident"] == 0.0 and fixed["top1_in_pair"] == 0.0


def test_confidence_needs_the_second_score_above_one_half():
    scores = torch.tensor([[0.9, 0.6, 0.1], [0.9, 0.4, 0.1], [0.9, 0.1, 0.6], [0.2, 0.55, 0.7]])
    pair_labels = torch.tensor([[0, 1], [1, 0], [0, 1], [2, 1]])
    # reference: both true classes are the top two, and the smaller of their scores exceeds 0.5
    expected = []
    for row, (a, b) in zip(scores.tolist(), pair_labels.tolist()):
        others = [s for k, s in enumerate(row) if k not in (a, b)]
        expected.append(min(row[a], row[b]) > max(others) and min(row[a], row[b]) > 0.5)
    assert confident_top2_hits(scores, pair_labels).tolist() == expected == [True, False, False, True]


def test_models_without_bounded_scores_get_no_confidence_column():
    class Logits(BlockOracle):
        scores_are_probabilities = False

    labels = torch.arange(40) % 4
    result = overlap_test(Logits(), class_images(labels), labels, 50, mode="stack")
    assert result["top2_confident"] is None and result["top2_pair"] == 1.0


@pytest.mark.parametrize("height, width, grid", [(28, 28, (8, 8)), (56, 28, (22, 8)), (14, 15, (1, 1))])
def test_su_front_end_is_fully_convolutional(height, width, grid):
    front = SuConvFrontEnd(1, (4, 6))
    features = front(torch.rand(2, 1, height, width))
    assert features.shape == (2, 6, *grid)
    capsules = positions_as_capsules(features)
    assert capsules.shape == (2, grid[0] * grid[1], 6)
    y, x = grid[0] - 1, grid[1] // 2
    assert torch.equal(capsules[:, y * grid[1] + x], features[:, :, y, x])  # capsule n = y * W + x
    with pytest.raises(ValueError, match="at least 14"):
        front(torch.rand(1, 1, 13, 28))


def test_su_capsule_network_is_shared_votes_and_su_routing_over_positions():
    torch.manual_seed(0)
    model = CapsNet(input_shape=(1, 28, 28), num_classes=10, class_dim=4, **SU_CAPSULE).eval()
    assert model.num_primary == 64 and model.decoder is None
    for height in (28, 56):
        x = torch.rand(3, 1, height, 28)
        with torch.no_grad():
            lengths = model(x)
            # reference: every position's channel vector times the one shared matrix per class
            features = model.conv(x)
            u = torch.stack(
                [features[:, :, i, j] for i in range(features.shape[2]) for j in range(features.shape[3])], 1
            )
            votes = torch.einsum("jdk,bik->bijd", model.class_caps.weight, u)
            v, _ = su_routing(votes, 3)
        assert lengths.shape == (3, 10) and ((lengths >= 0) & (lengths < 1)).all()
        torch.testing.assert_close(lengths, v.norm(dim=-1), atol=1e-5, rtol=1e-4)
    assert takes_input(model, torch.rand(1, 56, 28))


def test_su_capsule_options_are_checked():
    with pytest.raises(ValueError, match="shared_weights"):
        CapsNet(input_shape=(1, 28, 28), **{**SU_CAPSULE, "shared_weights": False})
    with pytest.raises(ValueError, match="at least 14"):
        CapsNet(input_shape=(1, 8, 8), **SU_CAPSULE)
    with pytest.raises(ValueError, match="frontend must be one of"):
        CapsNet(input_shape=(1, 28, 28), **{**SU_CAPSULE, "frontend": "resnet"})
    # the Sabour front end with per-pair votes fixes the input size: no stacked test for it
    sabour = CapsNet(
        input_shape=(1, 8, 8),
        conv_channels=4,
        conv_kernel=3,
        primary_types=2,
        primary_kernel=3,
        primary_stride=1,
        class_dim=4,
        decoder=False,
    )
    assert takes_input(sabour, torch.rand(1, 8, 8)) and not takes_input(sabour, torch.rand(1, 16, 8))


def test_su_cnn_is_global_pooling_with_sigmoid_scores_and_the_margin_loss():
    torch.manual_seed(0)
    model = CNNBaseline(input_shape=(1, 28, 28), num_classes=10, **SU_CNN)
    assert model.scores_are_probabilities
    assert not CNNBaseline(input_shape=(1, 28, 28), num_classes=10).scores_are_probabilities
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 3, 9, 3, 1])
    loss, scores, terms = model.loss(x, y)
    pooled = model.features[0](x).mean(dim=(2, 3))  # the front end, globally averaged by hand
    reference_scores = torch.sigmoid(model.head[1:](pooled))
    torch.testing.assert_close(scores, reference_scores)
    # margin loss from its equation, λ = 0.25
    t = torch.nn.functional.one_hot(y, 10).float()
    reference = (t * (0.9 - scores).clamp(min=0) ** 2 + 0.25 * (1 - t) * (scores - 0.1).clamp(min=0) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(terms["margin_loss"], margin_loss(scores, y, lam=0.25))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), scores)
        assert model(torch.rand(2, 1, 56, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="loss must be one of"):
        CNNBaseline(input_shape=(1, 28, 28), loss="hinge")
    with pytest.raises(ValueError, match="features must be one of"):
        CNNBaseline(input_shape=(1, 28, 28), features="resnet")


def test_su_networks_take_an_idx_digit_set_and_its_stacked_pairs(tmp_path):
    from test_datamodules import fake_mnist

    from datamodules.mnist import MNISTDataModule

    fake_mnist(tmp_path / "digits", n_train=48, n_test=20)
    dm = MNISTDataModule(data_dir=str(tmp_path / "digits"), batch_size=8)
    dm.setup("test")
    images, labels = (torch.cat(parts) for parts in zip(*dm.test_dataloader()))
    assert images.shape == (20, 1, 28, 28)
    capsule = CapsNet(input_shape=dm.input_shape, num_classes=dm.num_classes, **SU_CAPSULE)
    cnn = CNNBaseline(input_shape=dm.input_shape, num_classes=dm.num_classes, **SU_CNN)
    for model in (capsule, cnn):
        scored = score_overlaps(model, images, labels, num_pairs=12, mode="stack")
        assert scored["overlays"].shape == (12, 1, 56, 28) and scored["scores"].shape == (12, 10)
        assert scored["confident"] is not None and ((scored["scores"] >= 0) & (scored["scores"] <= 1)).all()


@pytest.mark.slow
def test_su_recipes_train_on_an_idx_digit_set_and_compare_in_both_modes(tmp_path, monkeypatch):
    from conftest import FAST, ROOT, train
    from test_datamodules import fake_mnist

    from evaluation.overlap_compare import main as compare_main

    data = tmp_path / "digits"
    fake_mnist(data, n_train=48, n_test=20)
    small = ("--model.frontend_channels", "[4, 6]", "--trainer.max_epochs", "1", "--data.batch_size", "16", *FAST)
    for model, recipe in (("capsule", "capsule_su.yaml"), ("cnn_baseline", "cnn_su.yaml")):
        monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
        args = ("--model", model, "--data", "mnist", "--data.data_dir", str(data), "--logger", "csv")
        assert train(*args, "--config", str(ROOT / "configs" / recipe), *small) == 0
    runs = sorted(Path("runs").iterdir())
    assert compare_main(["--runs", *map(str, runs), "--pairs", "30", "--mode", "stack", "max", "--out", "o.md"]) == 0
    table = Path("o.md").read_text()
    rows = [line for line in table.splitlines() if "| mnist |" in line]
    assert len(rows) == 4 and sum("| stack |" in row for row in rows) == 2
    assert all(row.count("%") >= 4 for row in rows)  # both networks take 56×28 and have bounded scores
