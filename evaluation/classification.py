"""Report sections shared by the image classifiers: per-class accuracy and the confusion matrix.

Both come from the ``MulticlassConfusionMatrix`` the model filled during ``trainer.test`` (see
:class:`lit_modules.classifier.ImageClassifier`), so they cost no second pass over the test set.
Also holds the helpers the other sections use to run a model on a sample of the test split.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from evaluation.context import EvalContext
from evaluation.report import Report


def class_names_of(ctx: EvalContext, num_classes: int) -> list[str]:
    """The data module's class names, or the class indices when it has none."""
    names = list(getattr(ctx.datamodule, "class_names", ()) or ())
    return names if len(names) == num_classes else [str(c) for c in range(num_classes)]


def test_arrays(datamodule, max_samples: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of the test split, all of them or a random subset of ``max_samples`` fixed by ``seed``.

    Shape:
        - output: ``(N, *input_shape)`` images, ``(N,)`` labels
    """
    if datamodule.test_set is None:
        datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    if max_samples is not None and len(images) > max_samples:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_samples]
        images, labels = images[keep], labels[keep]
    return images, labels


@torch.no_grad()
def predict_scores(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's class scores in eval mode, batch by batch, on the model's device.

    Shape:
        - images: ``(N, *input_shape)``
        - output: ``(N, num_classes)``, on the CPU
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        scores = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(scores)


def confusion_figure(confusion: torch.Tensor, names: list[str]) -> Figure:
    """Row-normalised confusion matrix as an image, with the counts written in the cells."""
    counts = confusion.cpu().float()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = 1.2 + 0.5 * len(names)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot(1, 1, 1)
    shown = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    ticks = range(len(names))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    if len(names) <= 20:
        for (i, j), value in zip(((i, j) for i in ticks for j in ticks), counts.flatten().tolist()):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    return fig


def add_classification_sections(report: Report, ctx: EvalContext) -> None:
    """Per-class accuracy table and confusion-matrix figure of the test split."""
    confusion = ctx.model.test_confusion.compute().cpu()
    names = class_names_of(ctx, confusion.shape[0])
    support = confusion.sum(dim=1)
    correct = confusion.diag()
    rows = [
        [name, int(n), float(c / n) if n else float("nan")]
        for name, n, c in zip(names, support.tolist(), correct.tolist())
    ]
    total = int(support.sum())
    rows.append(["all", total, float(correct.sum() / max(total, 1))])
    report.add_table(
        "Accuracy per class (test split)",
        ["class", "test images", "accuracy"],
        rows,
        note="From the test pass's torchmetrics MulticlassConfusionMatrix; accuracy = recall of each true class.",
    )
    report.add_figure(
        "confusion_matrix",
        confusion_figure(confusion, names),
        "Confusion matrix (test split)",
        "Rows: true class, columns: predicted class; colour: share of the row, numbers: image counts.",
    )
