"""The overlap test: classify two test images of different classes laid over each other.

A model trained on single images should, for an overlay of a 3 and a 7, rank the classes 3 and
7 first and second (Su Jianlin, kexue.fm/archives/4819: capsules ≈ 95% on MNIST, a CNN with
pooling ≈ 40%). Overlays are the pixelwise maximum of the two images; pairs are drawn with a
fixed seed so every model sees the same ones.

Compare runs side by side (one Markdown table; each run's best checkpoint)::

    python -m evaluation.overlap_compare --runs runs/capsule-... runs/capsule_em-... runs/cnn_baseline-...
    python -m evaluation.overlap_compare --runs RUN [RUN ...] --pairs 2000 --seed 1 --out reports/overlap.md

In ``evaluate.py`` reports the number of pairs is :data:`DEFAULT_PAIRS`, or the environment
variable ``LITSUITE_OVERLAP_PAIRS``.
"""

from __future__ import annotations

import os

import torch

from evaluation.classification import class_names_of, predict_scores, test_arrays
from evaluation.context import EvalContext
from evaluation.image_grid import image_grid
from evaluation.report import Report
from evaluation.stats import percent_with_ci

DEFAULT_PAIRS = 1000
PAIRS_ENV = "LITSUITE_OVERLAP_PAIRS"
RESULT_KEY = "overlap/top2_acc"  # the report's result, as evaluation/figures.yaml names it
EXAMPLES = 16


def draw_pairs(labels: torch.Tensor, num_pairs: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``num_pairs`` pairs of images whose labels differ, drawn uniformly with a fixed seed.

    The first image is any image; the second is a uniform image of a uniformly chosen *other*
    class present in ``labels``, so no pair is ever rejected and redrawn.

    Shape:
        - labels: ``(N,)`` integer
        - output: ``(num_pairs, 2)`` indices into ``labels``
    """
    classes, counts = torch.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the overlap test needs images of at least two classes, got only class {classes.tolist()}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.argsort(labels, stable=True)  # indices grouped by class
    starts = torch.cumsum(counts, 0) - counts
    first = torch.randint(len(labels), (num_pairs,), generator=generator)
    first_class = torch.searchsorted(classes, labels[first])
    # Adding 1..K-1 (mod K) to the class rank can never give the same class back.
    shift = torch.randint(1, len(classes), (num_pairs,), generator=generator)
    second_class = (first_class + shift) % len(classes)
    within = (torch.rand(num_pairs, generator=generator) * counts[second_class]).long()
    second = order[starts[second_class] + within.clamp(max=counts[second_class] - 1)]
    return torch.stack((first, second), dim=1)


def overlay(images: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Pixelwise maximum of the two images of each pair.

    Shape:
        - images: ``(N, C, H, W)``
        - pairs: ``(M, 2)``
        - output: ``(M, C, H, W)``
    """
    return torch.maximum(images[pairs[:, 0]], images[pairs[:, 1]])


def top2_hits(scores: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
    """Whether the two highest scores are exactly the two true classes (in either order).

    Shape:
        - scores: ``(M, num_classes)``
        - pair_labels: ``(M, 2)``, two different classes per row
        - output: ``(M,)`` bool
    """
    top2 = scores.topk(2, dim=1).indices.sort(dim=1).values
    return (top2 == pair_labels.sort(dim=1).values).all(dim=1)


def score_overlaps(model, images: torch.Tensor, labels: torch.Tensor, num_pairs: int, seed: int = 0) -> dict:
    """The overlaps of ``num_pairs`` drawn pairs and the model's scores for them and for the single images.

    Returns:
        ``pairs`` ``(M, 2)``, ``overlays`` ``(M, C, H, W)``, ``scores`` ``(M, num_classes)``, ``hits``
        ``(M,)`` bool (top-2 = true pair), ``single_right`` ``(U,)`` bool for the U distinct images used.
    """
    pairs = draw_pairs(labels, num_pairs, seed)
    overlays = overlay(images, pairs)
    scores = predict_scores(model, overlays)
    used = pairs.flatten().unique()
    single_right = predict_scores(model, images[used]).argmax(dim=1) == labels[used]
    hits = top2_hits(scores, labels[pairs])
    return {"pairs": pairs, "overlays": overlays, "scores": scores, "hits": hits, "single_right": single_right}


def overlap_test(model, images: torch.Tensor, labels: torch.Tensor, num_pairs: int, seed: int = 0) -> dict[str, float]:
    """Overlap success of ``model`` on ``num_pairs`` overlays of ``images``.

    Returns:
        ``top2_pair``: share of overlays whose top-2 classes are the true pair;
        ``top1_in_pair``: share whose top class is one of the two;
        ``single_acc``: accuracy on the (single) images used in the pairs, for reference.
    """
    scored = score_overlaps(model, images, labels, num_pairs, seed)
    pair_labels = labels[scored["pairs"]]
    top1_in_pair = (scored["scores"].argmax(dim=1, keepdim=True) == pair_labels).any(dim=1)
    return {
        "top2_pair": scored["hits"].float().mean().item(),
        "top1_in_pair": top1_in_pair.float().mean().item(),
        "single_acc": scored["single_right"].float().mean().item(),
    }


def overlay_examples(scored: dict, labels: torch.Tensor, names: list[str], count: int = EXAMPLES):
    """A figure of the first ``count`` overlays, titled ``true pair → top-2``, green when they agree."""
    shown = range(min(count, len(scored["pairs"])))
    top2 = scored["scores"].topk(2, dim=1).indices
    titles, colours = [], []
    for i in shown:
        a, b = labels[scored["pairs"][i]].tolist()
        p, q = top2[i].tolist()
        titles.append(f"{names[a]}+{names[b]} → {names[p]},{names[q]}")
        colours.append("tab:green" if scored["hits"][i] else "tab:red")
    return image_grid(scored["overlays"][: len(titles)], titles, colours)


def pairs_setting() -> int:
    """Number of overlays for report hooks: ``LITSUITE_OVERLAP_PAIRS`` or :data:`DEFAULT_PAIRS`."""
    value = os.environ.get(PAIRS_ENV, str(DEFAULT_PAIRS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{PAIRS_ENV} must be a positive integer, got '{value}'")
    return int(value)


def add_overlap_section(report: Report, ctx: EvalContext, seed: int = 0) -> None:
    """The overlap test of the evaluated model: a table with intervals, and example overlays with its top two."""
    num_pairs = pairs_setting()
    images, labels = test_arrays(ctx.datamodule)
    scored = score_overlaps(ctx.model, images, labels, num_pairs, seed)
    hits, single = scored["hits"], scored["single_right"]
    top1_in_pair = (scored["scores"].argmax(dim=1, keepdim=True) == labels[scored["pairs"]]).any(dim=1)
    ctx.results[RESULT_KEY] = hits.float().mean().item()
    ctx.result_sizes[RESULT_KEY] = num_pairs
    report.add_table(
        "Overlap test: two test images of different classes overlaid",
        ["overlays", "top-2 = true pair", "top-1 in pair", "accuracy on the single images"],
        [
            [
                num_pairs,
                percent_with_ci(hits.float().mean().item(), num_pairs),
                percent_with_ci(top1_in_pair.float().mean().item(), num_pairs),
                percent_with_ci(single.float().mean().item(), len(single)),
            ]
        ],
        note=f"Overlay = pixelwise max of two test images of different classes, pairs drawn with seed {seed} "
        f"({num_pairs} pairs, a sample of all possible pairs; set {PAIRS_ENV} for more). The model never saw "
        "overlays in training. Success = its two highest class scores are the two true classes. In brackets: "
        f"95 % Wilson intervals ({len(single)} distinct single images). Compare models with: "
        "python -m evaluation.overlap_compare --runs RUN RUN ...",
    )
    names = class_names_of(ctx, scored["scores"].shape[1])
    report.add_figure(
        "overlap_examples",
        overlay_examples(scored, labels, names),
        "Overlap test examples (true pair → the model's top two)",
        "The first overlays of the test; green: the two highest class scores are the true pair, red: they are not.",
    )
