"""Example images for reports: a grid of small images, each with a short coloured title."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure


def displayable(image: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, str | None]:
    """An image as ``imshow`` takes it, mapped from ``[low, high]`` to [0, 1], with the colour map it needs.

    Grey images (1 channel) and images with other channel counts than 3 (e.g. a stereo pair) show
    their first channel in grey.

    Shape:
        - image: ``(C, H, W)``
        - output: ``(H, W)`` or ``(H, W, 3)``
    """
    image = image.detach().float().cpu()
    image = ((image - low) / (high - low)).clamp(0, 1) if high > low else torch.zeros_like(image)
    if image.shape[0] == 3:
        return image.permute(1, 2, 0), None
    return image[0], "gray"  # not inverted: photographs (smallNORB) would turn into negatives


def image_grid(
    images: torch.Tensor, titles: list[str], colours: list[str] | None = None, cols: int = 8, size: float = 1.1
) -> Figure:
    """One small panel per image, titled.

    Args:
        images: ``(N, C, H, W)``.
        titles: one per image.
        colours: title colours (e.g. green for right, red for wrong); black when None.
        cols: panels per row.
        size: inches per panel.
    """
    count = len(images)
    cols = max(1, min(cols, count))
    rows = max(1, math.ceil(count / cols))
    fig = Figure(figsize=(size * cols, (size + 0.25) * rows))
    # One brightness scale for the whole grid, so that panels compare (an input and its reconstruction).
    low, high = float(images.min()), float(images.max())
    for i in range(count):
        ax = fig.add_subplot(rows, cols, i + 1)
        shown, cmap = displayable(images[i], low, high)
        ax.imshow(shown.numpy(), cmap=cmap, interpolation="nearest")
        ax.set_title(titles[i], fontsize=7, color=(colours[i] if colours else "black"))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    return fig
