"""Reconstructions beside their inputs, for models that decode an image from their representation."""

from __future__ import annotations

import torch

from evaluation.classification import class_names_of, predict_scores, test_arrays
from evaluation.context import EvalContext
from evaluation.image_grid import image_grid
from evaluation.report import Report

EXAMPLES = 12


def add_reconstruction_section(report: Report, ctx: EvalContext, count: int = EXAMPLES) -> None:
    """Test images (top row) and the model's reconstructions from its predicted class (bottom row).

    Needs ``ctx.model.reconstruct(x)`` returning images shaped like ``x``; a model built without its
    decoder (``decoder`` is None) gets a note instead.
    """
    model = ctx.model
    if getattr(model, "decoder", None) is None:
        report.add_note("No reconstructions: this model was built without its decoder (decoder=false).")
        return
    images, labels = test_arrays(ctx.datamodule, max_samples=count, seed=1)
    scores = predict_scores(model, images)
    predicted = scores.argmax(dim=1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            rebuilt = model.reconstruct(images.to(device), predicted.to(device)).float().cpu()
    finally:
        model.train(was_training)
    names = class_names_of(ctx, scores.shape[1])
    titles = [f"input {names[y]}" for y in labels.tolist()] + [f"from {names[p]}" for p in predicted.tolist()]
    right = (predicted == labels).tolist()
    colours = ["black"] * len(images) + ["tab:green" if r else "tab:red" for r in right]
    report.add_figure(
        "reconstructions",
        image_grid(torch.cat([images, rebuilt.reshape(images.shape)]), titles, colours, cols=len(images)),
        "Reconstructions from the class capsules",
        "Top: test images; bottom: the decoder's image from the capsule of the predicted class (green: the "
        "prediction is right, red: wrong). A good capsule keeps the input's pose and thickness, not just its class.",
    )
