"""The frozen-feature yardsticks: weighted k-NN against a loop from its definition, and the linear probe."""

from __future__ import annotations

import math

import torch

from evaluation.probes import linear_probe_predict, weighted_knn_predict


def test_weighted_knn_matches_a_loop_over_test_samples():
    g = torch.Generator().manual_seed(0)
    train, labels, test = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g), torch.randn(9, 5)
    got = weighted_knn_predict(train, labels, test, num_classes=3, k=7, temperature=0.5, chunk=4)
    for i, query in enumerate(test):
        similarity = torch.nn.functional.cosine_similarity(query.view(1, -1), train, dim=1)
        order = similarity.argsort(descending=True)[:7]
        votes = [0.0, 0.0, 0.0]
        for j in order.tolist():
            votes[labels[j]] += math.exp(similarity[j].item() / 0.5)
        assert got[i].item() == max(range(3), key=votes.__getitem__)


def test_both_classify_separable_clusters():
    g = torch.Generator().manual_seed(1)
    centres = 4 * torch.randn(4, 8, generator=g)
    labels = torch.arange(400) % 4
    points = centres[labels] + torch.randn(400, 8, generator=g)
    train, test = slice(0, 300), slice(300, 400)
    knn = weighted_knn_predict(points[train], labels[train], points[test], num_classes=4, k=20)
    probe = linear_probe_predict(points[train], labels[train], points[test])
    assert (knn == labels[test]).float().mean() > 0.95
    assert (probe == labels[test]).float().mean() > 0.95


def test_views_figure_shows_each_image_with_two_different_views(tmp_path):
    from evaluation.augmented_views import views_figure
    from lit_modules.components.simclr_augment import SimCLRAugment

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    fig = views_figure(images, SimCLRAugment((3, 16, 16)))
    assert torch.equal(torch.get_rng_state(), state)  # drawing the figure left the random stream alone
    axes = fig.get_axes()
    assert len(axes) == 9
    shown = [ax.get_images()[0].get_array() for ax in axes[:3]]
    assert not (shown[1] == shown[2]).all() and not (shown[0] == shown[1]).all()
    fig.savefig(tmp_path / "views.png")
    assert (tmp_path / "views.png").stat().st_size > 1000
