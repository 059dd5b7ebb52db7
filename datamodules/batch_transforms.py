"""Image transforms applied to whole batches on the device: standardisation, crops, photometric jitter.

Random draws come from torch's generator on the batch's device, which ``seed_everything`` seeds
and the run's checkpoints restore, so augmented runs resume exactly.
"""

from __future__ import annotations

import torch


def per_image_standardise(images: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance per image, as TensorFlow's ``per_image_standardization``.

    The standard deviation is floored at ``1/sqrt(number of elements)`` so that a uniform image
    does not divide by zero.

    Shape:
        - images: ``(B, C, H, W)``
        - output: ``(B, C, H, W)``, float
    """
    x = images.float()
    flat = x.flatten(1)
    mean = flat.mean(dim=1)
    floor = flat.shape[1] ** -0.5
    std = flat.std(dim=1, unbiased=False).clamp(min=floor)
    return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size``×``size`` window (top-left pixel rounded down when the margin is odd).

    Shape:
        - images: ``(B, C, H, W)`` with ``H, W >= size``
        - output: ``(B, C, size, size)``
    """
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"cannot crop {size}×{size} from {height}×{width} images")
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def random_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """An independent, uniformly placed ``size``×``size`` window per image, in one gather.

    Shape:
        - images: ``(B, C, H, W)`` with ``H, W >= size``
        - output: ``(B, C, size, size)``
    """
    batch, _, height, width = images.shape
    if size > min(height, width):
        raise ValueError(f"cannot crop {size}×{size} from {height}×{width} images")
    device = images.device
    top = torch.randint(0, height - size + 1, (batch,), device=device)
    left = torch.randint(0, width - size + 1, (batch,), device=device)
    offsets = torch.arange(size, device=device)
    rows = top.view(-1, 1, 1) + offsets.view(1, -1, 1)
    cols = left.view(-1, 1, 1) + offsets.view(1, 1, -1)
    index = torch.arange(batch, device=device).view(-1, 1, 1)
    # Channels last, so one advanced index picks whole pixels: (B, size, size, C).
    return images.permute(0, 2, 3, 1)[index, rows, cols].permute(0, 3, 1, 2)


def random_shift(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate each image independently by up to ``max_shift`` pixels in each direction, filling with 0.

    Equivalent to zero-padding by ``max_shift`` on every side and taking a uniformly placed
    window of the original size (the augmentation of Sabour et al. for MNIST, there 2 pixels).

    Shape:
        - images: ``(B, C, H, W)``
        - output: ``(B, C, H, W)``
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return images
    height = images.shape[-2]
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    if images.shape[-1] != height:
        raise ValueError(f"random_shift expects square images, got {tuple(images.shape[-2:])}")
    return random_crop(padded, height)


def brightness_contrast(images: torch.Tensor, brightness: float, contrast: tuple[float, float]) -> torch.Tensor:
    """Random brightness shift, then random contrast scaling about each image's mean.

    Per image: ``x + δ`` with ``δ ~ U(-brightness, brightness)``, then ``(x - mean) · f + mean``
    with ``f ~ U(contrast)``, the jitter of the matrix-capsule paper's smallNORB pipeline. On
    standardised images ``brightness`` is in units of the image's standard deviation.

    Shape:
        - images: ``(B, C, H, W)``
        - output: ``(B, C, H, W)``
    """
    batch = images.shape[0]
    low, high = contrast
    shape = (batch, 1, 1, 1)
    delta = (torch.rand(shape, device=images.device) * 2.0 - 1.0) * brightness
    factor = low + (high - low) * torch.rand(shape, device=images.device)
    shifted = images + delta
    mean = shifted.mean(dim=(1, 2, 3), keepdim=True)
    return (shifted - mean) * factor + mean
