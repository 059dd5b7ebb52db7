"""simclr's report: alignment and uniformity against loops from their definitions, and the hook's sections.
train.py → evaluate.py end to end is checked on the 2-process run in test_simclr.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from evaluation.embedding_geometry import alignment, uniformity


def test_alignment_and_uniformity_match_loops_over_pairs():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    unit = lambda v: v / v.norm()
    expected_alignment = sum((unit(a) - unit(b)).norm().item() ** 2 for a, b in zip(z1, z2)) / 7
    pairs = [(j, k) for j in range(7) for k in range(j + 1, 7)]
    potentials = [math.exp(-2 * (unit(z1[j]) - unit(z1[k])).norm().item() ** 2) for j, k in pairs]
    assert alignment(z1, z2) == pytest.approx(expected_alignment, rel=1e-12)
    assert uniformity(z1) == pytest.approx(math.log(sum(potentials) / len(potentials)), rel=1e-12)


def test_alignment_and_uniformity_at_their_extremes():
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    assert alignment(z, 3 * z) == pytest.approx(0.0, abs=1e-12)  # scale does not matter: unit vectors
    assert alignment(z, -z) == pytest.approx(4.0)
    assert uniformity(z[:1].expand(10, 3)) == pytest.approx(0.0, abs=1e-12)
    # evenly spaced on the unit circle, many points: log of the mean of e^{-2·(2 - 2cos θ)} = -4 + log I0(4)
    angles = torch.linspace(0, 2 * math.pi, 2001)[:-1]
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert uniformity(circle) == pytest.approx(-4 + math.log(11.301921952136330), abs=2e-3)
    with pytest.raises(ValueError, match="at least two"):
        uniformity(z[:1])


def test_hook_sets_frozen_features_beside_pixels_and_the_contrastive_measures(monkeypatch, tmp_path):
    from lightning.pytorch import Trainer

    from datamodules.synthetic import SyntheticDataModule
    from evaluation.context import EvalContext
    from evaluation.models import simclr as hook
    from evaluation.report import Report
    from lit_modules.simclr import SimCLR

    monkeypatch.setenv(hook.PROBE_TRAIN_ENV, "100")
    torch.manual_seed(0)
    dm = SyntheticDataModule(num_samples=160, batch_size=16)
    model = SimCLR(input_shape=dm.input_shape, num_classes=dm.num_classes, projection_hidden=32)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    ctx = EvalContext("simclr", model, dm, trainer, {}, tmp_path, Path("none.ckpt"))
    state = torch.get_rng_state()
    report = Report("simclr", tmp_path / "report")
    hook.extend_report(report, ctx)
    assert torch.equal(torch.get_rng_state(), state)  # seeded views, drawn in a forked random state
    titles = [t.title for t in report.tables]
    assert titles == ["Frozen features against raw pixels (test split)",
                      "Contrastive space (test split, two augmented views per image)"]
    rows = report.tables[0].rows
    assert rows[0][1] == 64 and rows[1][1] == model.backbone.feature_dim
    for key in ("probe/knn_acc", "probe/linear_acc", "probe/pixels_knn_acc", "probe/pixels_linear_acc"):
        assert 0 <= ctx.results[key] <= 1 and ctx.result_sizes[key] == len(dm.test_set)
    # InfoNCE lies between 0 and ln(2B − 1) for batches of B = 16
    assert 0 < ctx.results["test/infonce"] < math.log(31)
    assert 0 <= ctx.results["embedding/alignment"] <= 4 and ctx.results["embedding/uniformity"] < 0
    for name in ("feature_map", "augmented_views"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 1000
    # the same again: the figures repeat exactly
    again = EvalContext("simclr", model, dm, trainer, {}, tmp_path, Path("none.ckpt"))
    hook.extend_report(Report("simclr", tmp_path / "again"), again)
    assert again.results == ctx.results
