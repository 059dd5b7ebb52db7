"""Evaluation of the classifiers: overlap-test construction and scoring, routing ablation, report hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from datamodules.synthetic import SyntheticDataModule
from evaluation.context import EvalContext
from evaluation.models import capsule, capsule_em, cnn_baseline
from evaluation.overlap import draw_pairs, overlap_test, overlay, top2_hits
from evaluation.report import Report
from evaluation.routing_ablation import routing_ablation
from lit_modules.capsule import CapsNet
from lit_modules.capsule_em import MatrixCapsNet
from lit_modules.cnn_baseline import CNNBaseline


def test_pairs_are_two_different_classes_and_reproducible():
    labels = torch.tensor([0] * 50 + [1] * 3 + [2] * 20 + [4] * 7)  # unbalanced, class 3 absent
    pairs = draw_pairs(labels, 2000, seed=3)
    assert pairs.shape == (2000, 2)
    pair_labels = labels[pairs]
    assert (pair_labels[:, 0] != pair_labels[:, 1]).all()
    assert set(pair_labels.flatten().tolist()) == {0, 1, 2, 4}
    assert torch.equal(pairs, draw_pairs(labels, 2000, seed=3))
    assert not torch.equal(pairs, draw_pairs(labels, 2000, seed=4))
    # every other class is about equally likely as the partner of a class-0 image
    partners = pair_labels[pair_labels[:, 0] == 0, 1]
    shares = torch.bincount(partners, minlength=5)[[1, 2, 4]].float() / len(partners)
    assert (shares - 1 / 3).abs().max() < 0.08
    with pytest.raises(ValueError, match="at least two classes"):
        draw_pairs(torch.zeros(5, dtype=torch.long), 3)


def test_overlay_is_the_pixelwise_max_and_success_needs_both_classes():
    images = torch.rand(6, 1, 4, 4)
    pairs = torch.tensor([[0, 5], [2, 3]])
    out = overlay(images, pairs)
    assert torch.equal(out[0], torch.maximum(images[0], images[5])) and torch.equal(out[1], images[2].max(images[3]))
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.0], [0.9, 0.1, 0.8, 0.0], [0.2, 0.9, 0.1, 0.0]])
    pair_labels = torch.tensor([[2, 0], [0, 1], [1, 3]])
    assert top2_hits(scores, pair_labels).tolist() == [True, False, False]


class Oracle(LightningModule):
    """Reads the class straight off the image: class c lights pixel c, so an overlay lights both.

    A LightningModule: evaluation passes run through ``trainer.predict``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x.flatten(1)[:, :4] + self.anchor


def test_overlap_test_scores_a_model_that_sees_both_classes_as_perfect():
    labels = torch.arange(40) % 4
    images = torch.zeros(40, 1, 2, 2)
    images.view(40, 4)[torch.arange(40), labels] = 1.0
    result = overlap_test(Oracle(), images, labels, num_pairs=100, seed=0)
    assert result == {"top2_pair": 1.0, "top2_confident": None, "top1_in_pair": 1.0, "single_acc": 1.0}


def test_routing_ablation_scores_each_iteration_count_as_a_network_built_with_it():
    options = dict(input_shape=(1, 8, 8), num_classes=4, conv_channels=8, conv_kernel=3, primary_types=2,
                   primary_kernel=3, primary_stride=1, class_dim=4)
    torch.manual_seed(0)
    model = CapsNet(**options, iterations=3).eval()
    images = torch.rand(128, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for p in model.class_caps.parameters():
            p.mul_(30)  # large votes: at initialisation's small ones every iteration count predicts alike
        labels = model(images).argmax(dim=1)  # the trained setting is right on every image, the others need not be
    results = routing_ablation(model, images, labels)
    assert model.routing_iterations == 3
    assert [count for count, _ in results] == [1, 2, 3, 5] and dict(results)[3] == 1.0
    for count, accuracy in results:
        other = CapsNet(**options, iterations=count).eval()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            expected = (other(images).argmax(dim=1) == labels).float().mean().item()
        assert accuracy == pytest.approx(expected), count
    assert len({accuracy for _, accuracy in results}) > 1  # the counts give different predictions here


SMALL_MODELS = {
    "capsule": (
        CapsNet,
        {
            "conv_channels": 8,
            "conv_kernel": 3,
            "primary_types": 2,
            "primary_kernel": 3,
            "primary_stride": 1,
            "class_dim": 4,
        },
    ),
    "capsule_em": (
        MatrixCapsNet,
        {
            "conv_channels": 4,
            "conv_stride": 1,
            "conv_padding": 2,
            "primary_types": 2,
            "caps1_types": 2,
            "caps2_types": 2,
        },
    ),
    "cnn_baseline": (CNNBaseline, {"channels": (4,), "hidden": 8}),
}
HOOKS = {"capsule": capsule, "capsule_em": capsule_em, "cnn_baseline": cnn_baseline}


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_report_hooks_add_class_table_confusion_matrix_ablation_and_overlap(name, monkeypatch, tmp_path):
    monkeypatch.setenv("LITSUITE_OVERLAP_PAIRS", "50")
    dm = SyntheticDataModule(num_samples=64)
    model_class, options = SMALL_MODELS[name]
    model = model_class(input_shape=dm.input_shape, num_classes=dm.num_classes, **options)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    x_test, y_test = dm.test_set.tensors
    with torch.no_grad():
        hits = model.eval()(x_test).argmax(dim=1) == y_test  # recounted here, outside torchmetrics
    assert metrics["test/acc"] == pytest.approx(hits.float().mean().item())
    report = Report(name, tmp_path / "report")
    ctx = EvalContext(name, model, dm, trainer, metrics, tmp_path, Path("none.ckpt"))
    HOOKS[name].extend_report(report, ctx)
    titles = [t.title for t in report.tables]
    class_table = report.tables[titles.index("Accuracy per class (test split)")]
    assert [row[0] for row in class_table.rows] == [*dm.class_names, "all"]
    assert class_table.rows[-1][1] == len(dm.test_set) and class_table.rows[-1][2] == pytest.approx(metrics["test/acc"])
    for c, row in enumerate(class_table.rows[:-1]):
        assert row[1] == int((y_test == c).sum()) and row[2] == pytest.approx(hits[y_test == c].float().mean().item())
    assert any(t.startswith("Overlap test") for t in titles)
    assert ("Routing iterations at test time" in titles) == (name != "cnn_baseline")
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 1000
    report.write()


@pytest.mark.slow
def test_evaluate_reports_and_overlap_comparison_of_trained_runs(monkeypatch):
    from conftest import FAST, evaluate, train

    from evaluation.overlap_compare import main as compare_main

    monkeypatch.setenv("LITSUITE_OVERLAP_PAIRS", "40")
    short = ("--data", "synthetic", "--logger", "csv", "--trainer.max_epochs", "1", *FAST)
    for model in ("capsule", "cnn_baseline"):
        monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
        assert train("--model", model, *short) == 0
    runs = sorted(Path("runs").iterdir())
    capsule_run = next(r for r in runs if r.name.startswith("capsule-"))
    assert evaluate("--run", str(capsule_run)) == 0
    md = (Path("reports") / capsule_run.name / "report.md").read_text()
    for section in ("Accuracy per class", "Routing iterations at test time", "Overlap test", "confusion_matrix.png"):
        assert section in md
    assert compare_main(["--runs", *map(str, runs), "--pairs", "30", "--out", "overlap.md"]) == 0
    table = Path("overlap.md").read_text()
    assert table.count("| synthetic |") == 2 and "30 pairs per run" in table
