"""SimCLR's augmentation, applied to a whole batch on its device with independent parameters per image.

torchvision's v2 transforms draw one set of random parameters per call, so a batch passed as one
tensor would get the same crop, flip and jitter on every image (pytorch/vision #8484); per-image
calls in data-loader workers fix that but make the loader the bottleneck on a GPU. kornia draws
the parameters per sample, on the device the module lives on, from torch's own generator: a
seeded run (``seed_everything``) and a resumed one (the checkpoint restores the generator state)
draw the same views.
"""

from __future__ import annotations

import torch
from kornia import augmentation as K
from torch import nn


def blur_kernel_size(height: int, width: int) -> int:
    """SimCLR's blur kernel: about a tenth of the image side, odd, at least 3 pixels."""
    side = max(3, round(0.1 * min(height, width)))
    return side if side % 2 else side + 1


class SimCLRAugment(nn.Module):
    """One random view per image: resized crop, flip, colour jitter, grayscale, blur (Chen et al. 2020, App. A).

    The recipe, for images with values in [0, 1]:

    - random resized crop to the input size, area share in ``crop_scale``, aspect ratio 3/4 to 4/3;
    - horizontal flip with probability ``flip_p``;
    - with probability ``jitter_p``, colour jitter of strength s: brightness, contrast and
      saturation factors in [1 − 0.8s, 1 + 0.8s], hue shift up to 0.2s (brightness and contrast
      only for 1-channel images); kornia draws one order of the four steps per batch, not per image;
    - grayscale with probability ``grayscale_p`` (3-channel images only);
    - Gaussian blur with probability ``blur_p``, σ in [0.1, 2], kernel about a tenth of the side.
      ``blur=None`` blurs only images of at least ``64`` pixels a side: SimCLR leaves it out on
      32×32 CIFAR, where a 3-pixel kernel mostly erases the image.

    Every random parameter is drawn per image. Call the module twice for SimCLR's two views.

    Args:
        input_shape: ``(C, H, W)`` of the images; C is 1 or 3.
        strength: colour-jitter strength s (SimCLR: 1.0 on ImageNet, 0.5 on CIFAR); 0 turns jitter off.
        crop_scale: range of the crop's share of the image area.
        flip_p: probability of a horizontal flip.
        jitter_p: probability of colour jitter.
        grayscale_p: probability of turning a colour image gray.
        blur: blur on or off; ``None`` decides by image size (see above).
        blur_p: probability of blurring, where blur is on.
    """

    BLUR_MIN_SIDE = 64

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        strength: float = 0.5,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        flip_p: float = 0.5,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur: bool | None = None,
        blur_p: float = 0.5,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ValueError(f"SimCLR augmentation needs (C, H, W) images with 1 or 3 channels, got {input_shape}")
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {tuple(crop_scale)}")
        channels, height, width = input_shape
        ops: list[nn.Module] = [
            K.RandomResizedCrop((height, width), scale=tuple(crop_scale), cropping_mode="resample"),
            K.RandomHorizontalFlip(p=flip_p),
        ]
        if strength > 0 and jitter_p > 0:
            colour = 0.8 * strength if channels == 3 else 0.0
            hue = 0.2 * strength if channels == 3 else 0.0
            ops.append(K.ColorJitter(0.8 * strength, 0.8 * strength, colour, hue, p=jitter_p))
        if channels == 3 and grayscale_p > 0:
            ops.append(K.RandomGrayscale(p=grayscale_p))
        self.blurs = min(height, width) >= self.BLUR_MIN_SIDE if blur is None else blur
        if self.blurs and blur_p > 0:
            kernel = blur_kernel_size(height, width)
            ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=blur_p))
        self.pipeline = nn.Sequential(*ops)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """A random view of every image, with parameters drawn independently per image.

        Shape:
            - images: ``(B, C, H, W)``, values in [0, 1]
            - output: ``(B, C, H, W)``, float32
        """
        return self.pipeline(images.float())

    def views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of every image, as SimCLR contrasts them.

        Shape:
            - images: ``(B, C, H, W)``
            - outputs: ``(B, C, H, W)`` each
        """
        return self(images), self(images)
