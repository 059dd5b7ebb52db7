"""A figure of a few images beside their two augmented views, to see what the contrastive task asks."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


def views_figure(images: torch.Tensor, augment, seed: int = 0) -> Figure:
    """One row per image: the image, then two views drawn by ``augment`` (e.g. ``SimCLRAugment``).

    The views are drawn from ``seed`` inside a forked random state, so the figure is the same
    every time and drawing it changes no other random stream.

    Shape:
        - images: ``(B, C, H, W)``, values in [0, 1], C = 1 or 3
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        view1, view2 = augment(images.cpu()), augment(images.cpu())
    rows = images.shape[0]
    fig = Figure(figsize=(4.5, 1.5 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, columns in enumerate(zip(images.cpu(), view1, view2)):
        for c, (ax, picture) in enumerate(zip(axes[r], columns)):
            picture = picture.clamp(0, 1)
            if picture.shape[0] == 1:
                ax.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(picture.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(("image", "view 1", "view 2")[c], fontsize=9)
    fig.tight_layout()
    return fig
