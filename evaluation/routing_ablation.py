"""Routing-iterations ablation: test accuracy of one trained capsule network with 1, 2, 3, 5 iterations."""

from __future__ import annotations

from evaluation.classification import predict_scores, test_arrays
from evaluation.context import EvalContext
from evaluation.report import Report
from evaluation.stats import percent_with_ci

ITERATIONS = (1, 2, 3, 5)
MAX_SAMPLES = 2000  # test images per setting: five passes of a matrix-capsule net are slow on a CPU


def routing_ablation(model, images, labels, iterations=ITERATIONS) -> list[tuple[int, float]]:
    """Accuracy with each number of routing iterations; the model's own setting is restored after.

    Args:
        model: a capsule network with a settable ``routing_iterations`` attribute.
        images: test images ``(N, *input_shape)``.
        labels: their classes ``(N,)``.
        iterations: the counts to try.

    Returns:
        ``[(iterations, accuracy), ...]``.
    """
    trained = model.routing_iterations
    results = []
    try:
        for count in iterations:
            model.routing_iterations = count
            accuracy = (predict_scores(model, images).argmax(dim=1) == labels).float().mean().item()
            results.append((count, accuracy))
    finally:
        model.routing_iterations = trained
    return results


def add_routing_ablation(report: Report, ctx: EvalContext, max_samples: int = MAX_SAMPLES) -> None:
    """Table of test accuracy versus routing iterations, on up to ``max_samples`` test images."""
    images, labels = test_arrays(ctx.datamodule, max_samples)
    trained = ctx.model.routing_iterations
    rows = [
        [count, percent_with_ci(accuracy, len(images)), "trained with this" if count == trained else ""]
        for count, accuracy in routing_ablation(ctx.model, images, labels)
    ]
    report.add_table(
        "Routing iterations at test time",
        ["iterations", "test accuracy (95 % interval)", ""],
        rows,
        note=f"One trained model evaluated with each number of routing iterations, on {len(images)} test images "
        f"(a fixed random subset when the split is larger than {max_samples}, to keep the report cheap on a CPU). "
        "The settings see the same images, so their differences are less noisy than the intervals suggest.",
    )
