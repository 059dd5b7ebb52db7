"""The overlap test: classify two test images of different classes laid over each other.

A model trained on single images should, for an overlay of a 3 and a 7, rank the classes 3 and
7 first and second (Su Jianlin, kexue.fm/archives/4819: capsules ≈ 95% on MNIST, a CNN with
pooling ≈ 40%). Two ways of combining the pair (:data:`MODES`):

- ``max``: the pixelwise maximum of the two images, an image of the training size;
- ``stack``: the two images one above the other (28×28 + 28×28 → 56×28), Su's test; only a model
  that takes any image size (fully convolutional, shared votes) can be given it.

Pairs are drawn with a fixed seed so every model and both modes see the same ones. Success "w/o
confidence" is: the two highest class scores are the true pair; "w/ confidence" also asks the
second of them to exceed 0.5, which means something only for scores in [0, 1] (capsule lengths,
sigmoids; a model says so with a true ``scores_are_probabilities`` attribute).

Compare runs side by side (one Markdown table; each run's best checkpoint)::

    python -m evaluation.overlap_compare --runs runs/capsule-... runs/capsule_em-... runs/cnn_baseline-...
    python -m evaluation.overlap_compare --runs RUN [RUN ...] --pairs 2000 --seed 1 --out reports/overlap.md
    python -m evaluation.overlap_compare --runs RUN [RUN ...] --mode stack max --pairs 10000

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
RESULT_KEYS = {"max": RESULT_KEY, "stack": "overlap/stack_top2_acc"}
MODES = ("max", "stack")
CONFIDENT = 0.5  # the second highest score must exceed this for a success "w/ confidence"
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


def stack(images: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The two images of each pair one above the other, the first on top (Su's test).

    Shape:
        - images: ``(N, C, H, W)``
        - pairs: ``(M, 2)``
        - output: ``(M, C, 2H, W)``
    """
    return torch.cat((images[pairs[:, 0]], images[pairs[:, 1]]), dim=2)


COMBINE = {"max": overlay, "stack": stack}


def combine(images: torch.Tensor, pairs: torch.Tensor, mode: str) -> torch.Tensor:
    """The test inputs of ``mode`` (one of :data:`MODES`) for ``pairs``."""
    if mode not in COMBINE:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    return COMBINE[mode](images, pairs)


def takes_input(model, example: torch.Tensor) -> bool:
    """Whether ``model`` returns class scores for ``example`` ``(C, H, W)`` (a stacked pair needs a
    model that takes any image size)."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()
            device = next(model.parameters()).device
            model(example.unsqueeze(0).to(device))
    except (RuntimeError, ValueError):
        return False
    finally:
        model.train(was_training)
    return True


def takes_mode(model, images: torch.Tensor, mode: str) -> bool:
    """Whether ``model`` takes the inputs of ``mode`` built from ``images`` ``(N, C, H, W)`` (tried on one)."""
    return takes_input(model, combine(images[:1], torch.tensor([[0, 0]]), mode)[0])


def scores_are_probabilities(model) -> bool:
    """Whether the model's class scores lie in [0, 1] (capsule lengths, sigmoids), as it declares."""
    return bool(getattr(model, "scores_are_probabilities", False))


def top2_hits(scores: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
    """Whether the two highest scores are exactly the two true classes (in either order).

    Shape:
        - scores: ``(M, num_classes)``
        - pair_labels: ``(M, 2)``, two different classes per row
        - output: ``(M,)`` bool
    """
    top2 = scores.topk(2, dim=1).indices.sort(dim=1).values
    return (top2 == pair_labels.sort(dim=1).values).all(dim=1)


def confident_top2_hits(scores: torch.Tensor, pair_labels: torch.Tensor, threshold: float = CONFIDENT) -> torch.Tensor:
    """:func:`top2_hits` whose second highest score also exceeds ``threshold`` (Su's "w/ confidence").

    Shape:
        - scores: ``(M, num_classes)``, in [0, 1]
        - pair_labels: ``(M, 2)``
        - output: ``(M,)`` bool
    """
    return top2_hits(scores, pair_labels) & (scores.topk(2, dim=1).values[:, 1] > threshold)


def score_overlaps(
    model, images: torch.Tensor, labels: torch.Tensor, num_pairs: int, seed: int = 0, mode: str = "max"
) -> dict:
    """The combined pairs of ``num_pairs`` drawn pairs and the model's scores for them and for the single images.

    Returns:
        ``pairs`` ``(M, 2)``, ``overlays`` ``(M, C, H', W')`` (the inputs of ``mode``), ``scores``
        ``(M, num_classes)``, ``hits`` ``(M,)`` bool (top-2 = true pair), ``confident`` ``(M,)`` bool
        (also second score > 0.5; None when the scores are not in [0, 1]), ``top1_in_pair`` ``(M,)``
        bool, ``single_right`` ``(U,)`` bool for the U distinct images used, and ``mode``.
    """
    pairs = draw_pairs(labels, num_pairs, seed)
    overlays = combine(images, pairs, mode)
    scores = predict_scores(model, overlays)
    used = pairs.flatten().unique()
    single_right = predict_scores(model, images[used]).argmax(dim=1) == labels[used]
    pair_labels = labels[pairs]
    hits = top2_hits(scores, pair_labels)
    confident = confident_top2_hits(scores, pair_labels) if scores_are_probabilities(model) else None
    top1_in_pair = (scores.argmax(dim=1, keepdim=True) == pair_labels).any(dim=1)
    return {
        "pairs": pairs,
        "overlays": overlays,
        "scores": scores,
        "hits": hits,
        "confident": confident,
        "top1_in_pair": top1_in_pair,
        "single_right": single_right,
        "mode": mode,
    }


def overlap_test(
    model, images: torch.Tensor, labels: torch.Tensor, num_pairs: int, seed: int = 0, mode: str = "max"
) -> dict[str, float | None]:
    """Overlap success of ``model`` on ``num_pairs`` pairs of ``images`` combined as ``mode``.

    Returns:
        ``top2_pair``: share whose top-2 classes are the true pair (w/o confidence);
        ``top2_confident``: share that also has a second score > 0.5 (None unless the scores are in [0, 1]);
        ``top1_in_pair``: share whose top class is one of the two;
        ``single_acc``: accuracy on the (single) images used in the pairs, for reference.
    """
    scored = score_overlaps(model, images, labels, num_pairs, seed, mode)
    return summarise(scored)


def summarise(scored: dict) -> dict[str, float | None]:
    """The shares :func:`overlap_test` returns, from :func:`score_overlaps`'s output."""
    confident = scored["confident"]
    return {
        "top2_pair": scored["hits"].float().mean().item(),
        "top2_confident": None if confident is None else confident.float().mean().item(),
        "top1_in_pair": scored["top1_in_pair"].float().mean().item(),
        "single_acc": scored["single_right"].float().mean().item(),
    }


def overlay_examples(scored: dict, labels: torch.Tensor, names: list[str], count: int = EXAMPLES):
    """A figure of the first ``count`` combined pairs, titled ``true pair`` over the two highest
    scoring classes with their scores (for capsules: the two longest capsules and their lengths),
    green when they are the true pair."""
    shown = range(min(count, len(scored["pairs"])))
    top2 = scored["scores"].topk(2, dim=1)
    titles, colours = [], []
    for i in shown:
        a, b = labels[scored["pairs"][i]].tolist()
        (p, q), (sp, sq) = top2.indices[i].tolist(), top2.values[i].tolist()
        titles.append(f"{names[a]}+{names[b]}\n{names[p]} {sp:.2f}\n{names[q]} {sq:.2f}")
        colours.append("tab:green" if scored["hits"][i] else "tab:red")
    return image_grid(scored["overlays"][: len(titles)], titles, colours, size=1.4)


def pairs_setting() -> int:
    """Number of overlays for report hooks: ``LITSUITE_OVERLAP_PAIRS`` or :data:`DEFAULT_PAIRS`."""
    value = os.environ.get(PAIRS_ENV, str(DEFAULT_PAIRS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{PAIRS_ENV} must be a positive integer, got '{value}'")
    return int(value)


def add_overlap_section(report: Report, ctx: EvalContext, seed: int = 0) -> None:
    """The overlap test of the evaluated model in every mode it takes: a table with intervals, and
    example pairs with its two highest class scores named."""
    num_pairs = pairs_setting()
    images, labels = test_arrays(ctx.datamodule)
    probabilities = scores_are_probabilities(ctx.model)
    rows, skipped, figures = [], [], []
    for mode in MODES:
        if not takes_mode(ctx.model, images, mode):
            skipped.append(mode)
            continue
        scored = score_overlaps(ctx.model, images, labels, num_pairs, seed, mode)
        shares = summarise(scored)
        ctx.results[RESULT_KEYS[mode]] = shares["top2_pair"]
        ctx.result_sizes[RESULT_KEYS[mode]] = num_pairs
        rows.append(
            [
                mode,
                tuple(scored["overlays"].shape[-2:]),
                num_pairs,
                percent_with_ci(shares["top2_pair"], num_pairs),
                percent_with_ci(shares["top2_confident"], num_pairs) if probabilities else "n/a",
                percent_with_ci(shares["top1_in_pair"], num_pairs),
                percent_with_ci(shares["single_acc"], len(scored["single_right"])),
            ]
        )
        names = class_names_of(ctx, scored["scores"].shape[1])
        figures.append(
            (
                "overlap_examples" if mode == "max" else f"overlap_examples_{mode}",
                overlay_examples(scored, labels, names),
                f"Overlap test examples, mode {mode} (true pair; the model's two highest class scores)",
                "The first pairs of the test; under each: the true pair, then the two highest scoring classes with "
                "their scores (for a capsule network the two longest capsules and their lengths); green: they are the "
                "true pair, red: they are not.",
            )
        )
    note = (
        f"Pairs of test images of different classes drawn with seed {seed} ({num_pairs} pairs, a sample of all "
        f"possible pairs; set {PAIRS_ENV} for more), combined by pixelwise max (mode max) or stacked one above the "
        "other (mode stack, Su's test). The model never saw such inputs in training. Success w/o confidence = its "
        f"two highest class scores are the two true classes; w/ confidence = and the second exceeds {CONFIDENT} "
        "(only for scores in [0, 1]). In brackets: 95 % Wilson intervals. Compare models with: "
        "python -m evaluation.overlap_compare --runs RUN RUN ... --mode stack max"
    )
    if skipped:
        note += f" Not run: mode {', '.join(skipped)} (the model takes only images of its training size)."
    report.add_table(
        "Overlap test: two test images of different classes overlaid or stacked",
        ["mode", "input H×W", "pairs", "top-2 = true pair", "w/ confidence", "top-1 in pair", "single-image accuracy"],
        rows,
        note=note,
    )
    for figure in figures:
        report.add_figure(*figure)
