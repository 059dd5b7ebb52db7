"""Report sections shared by the image classifiers: per-class accuracy, confusion matrix, misclassified images.

Per-class accuracy and the confusion matrix come from the ``MulticlassConfusionMatrix`` the model
filled during ``trainer.test`` (see :class:`lit_modules.classifier.ImageClassifier`). Also holds the
helpers the other sections use to run a model on (a sample of) the test split.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from lightning.pytorch import Trainer
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from evaluation.context import EvalContext
from evaluation.image_grid import image_grid
from evaluation.report import Report
from evaluation.stats import percent_with_ci, wilson_interval

MAX_MISCLASSIFIED = 24


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


@lru_cache(maxsize=4)
def prediction_trainer(accelerator: str, device_index: int | None) -> Trainer:
    """A single-device Trainer for prediction passes (no logger, no progress bar, no DDP), one per device."""
    devices = [device_index] if device_index is not None else 1
    return Trainer(
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def predict_scores(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's class scores (its ``forward``) for ``images``, by ``trainer.predict`` on the model's device.

    The Trainer puts the model in eval mode and inference mode for the pass and back in its
    previous mode after.

    Shape:
        - images: ``(N, *input_shape)``
        - output: ``(N, num_classes)``, on the CPU
    """
    device = next(model.parameters()).device
    trainer = prediction_trainer(device.type, device.index if device.type == "cuda" else None)
    batches = trainer.predict(model, dataloaders=DataLoader(images, batch_size=batch_size))
    return torch.cat([b.float().cpu() for b in batches])


def confusion_figure(ctx: EvalContext, names: list[str]) -> Figure:
    """The test pass's confusion matrix, drawn by torchmetrics (counts in the cells)."""
    size = 2.0 + 0.55 * len(names)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot(1, 1, 1)
    ctx.model.test_confusion.plot(ax=ax, labels=names, cmap="Blues", add_text=len(names) <= 20)
    for text in ax.texts:  # torchmetrics writes every count at 15 pt: too large beside 10+ classes
        text.set_fontsize(8)
    ax.xaxis.label.set_fontsize(10)
    ax.yaxis.label.set_fontsize(10)
    fig.tight_layout()
    return fig


def misclassified(scores: torch.Tensor, labels: torch.Tensor, limit: int = MAX_MISCLASSIFIED) -> torch.Tensor:
    """Indices of the misclassified samples, most confident mistakes first.

    Confidence of a mistake = score of the predicted class minus score of the true class.

    Shape:
        - scores: ``(N, num_classes)``
        - labels: ``(N,)``
        - output: ``(M,)`` with M ≤ ``limit``
    """
    predicted = scores.argmax(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    gap = scores[wrong, predicted[wrong]] - scores[wrong, labels[wrong]]
    return wrong[gap.argsort(descending=True)][:limit]


def add_misclassified_section(report: Report, ctx: EvalContext, names: list[str]) -> None:
    """The most confidently misclassified test images, titled ``true → predicted``."""
    images, labels = test_arrays(ctx.datamodule)
    scores = predict_scores(ctx.model, images)
    predicted = scores.argmax(dim=1)
    errors = int((predicted != labels).sum())
    shown = misclassified(scores, labels)
    if not len(shown):
        report.add_note(f"No test image is misclassified ({len(labels)} of {len(labels)} right).")
        return
    titles = [f"{names[labels[i]]} → {names[predicted[i]]}" for i in shown.tolist()]
    report.add_figure(
        "misclassified",
        image_grid(images[shown], titles, ["tab:red"] * len(shown)),
        "Misclassified test images (true → predicted)",
        f"{errors} of {len(labels)} test images are misclassified; shown are the {len(shown)} the model was most "
        "sure of (largest score of the predicted class over the true one).",
    )


def add_classification_sections(report: Report, ctx: EvalContext) -> None:
    """Per-class accuracy with intervals, the confusion matrix and the misclassified test images."""
    confusion = ctx.model.test_confusion.compute().cpu()
    names = class_names_of(ctx, confusion.shape[0])
    support = confusion.sum(dim=1)
    correct = confusion.diag()
    rows = []
    for name, n, c in zip(names + ["all"], [*support.tolist(), int(support.sum())], [*correct.tolist(), correct.sum()]):
        low, high = wilson_interval(int(c), int(n))
        rows.append([name, int(n), float(c / n) if n else float("nan"), f"{low:.3f}–{high:.3f}" if n else "–"])
    report.add_table(
        "Accuracy per class (test split)",
        ["class", "test images", "accuracy", "95 % interval (Wilson)"],
        rows,
        note="From the test pass's torchmetrics MulticlassConfusionMatrix; accuracy = recall of each true class. "
        f"With few images per class the intervals are wide: overall {percent_with_ci(rows[-1][2], rows[-1][1])}.",
    )
    report.add_figure(
        "confusion_matrix",
        confusion_figure(ctx, names),
        "Confusion matrix (test split)",
        "Rows: true class, columns: predicted class; numbers and colour: image counts (torchmetrics' plot).",
    )
    add_misclassified_section(report, ctx, names)
