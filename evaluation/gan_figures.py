"""Pictures of a generator's output: sample grids, latent interpolation strips, point clouds over the modes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402


def image_grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """A grid of images in [0, 1], as one ``(3, H', W')`` image.

    Shape:
        - images: ``(B, C, H, W)``
    """
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)


def save_image_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """Write :func:`image_grid` as a PNG (folders made as needed)."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(images, nrow), path)
    return path


def points_figure(points: torch.Tensor, modes: torch.Tensor | None = None, std: float | None = None,
                  title: str = "") -> Figure:
    """Generated 2-D points, with the data's modes and their 3σ circles when known.

    Shape:
        - points: ``(N, 2)``
        - modes: ``(M, 2)``
    """
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    p = points.detach().float().cpu()
    ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.5, label="generated")
    if modes is not None:
        m = modes.float().cpu()
        ax.scatter(m[:, 0], m[:, 1], marker="x", color="red", s=40, label="modes")
        if std is not None:
            for x, y in m.tolist():
                ax.add_patch(Circle((x, y), 3 * std, fill=False, color="red", lw=0.8))
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def save_points(points: torch.Tensor, path: Path, modes: torch.Tensor | None = None, std: float | None = None,
                title: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    points_figure(points, modes, std, title).savefig(path, dpi=90)
    return path


def interpolation_latents(start: torch.Tensor, end: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Latent vectors on the great circle from ``start`` to ``end`` (spherical interpolation).

    Gaussian latents concentrate on a sphere; a straight line between two of them passes through
    points of atypically small norm, which the generator rarely saw.

    Shape:
        - start, end: ``(R, D)``
        - output: ``(R, steps, D)``
    """
    t = torch.linspace(0, 1, steps, dtype=start.dtype, device=start.device).view(1, steps, 1)
    a, b = start.unsqueeze(1), end.unsqueeze(1)
    cos = (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1, keepdim=True)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    sin = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / sin) * a + (torch.sin(t * omega) / sin) * b
