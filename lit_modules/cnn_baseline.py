"""``cnn_baseline``: a plain convolutional classifier, trained like the capsule networks, to compare against."""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.classifier import ImageClassifier
from lit_modules.components.conv_geometry import ConvStage, grid_sizes


class CNNBaseline(ImageClassifier):
    """Conv blocks (conv, ReLU, optional 2×2 max-pooling) → fully connected → logits, cross-entropy.

    Same optimiser, schedule, data and metrics as ``capsule`` and ``capsule_em`` (all three share
    :class:`~lit_modules.classifier.ImageClassifier`); only the network and the loss differ. Its
    class scores for the overlap test are the logits. Pooling is what Su's overlap experiment
    used for the CNN, and is what throws away where a feature was.

    Args:
        input_shape: ``(C, H, W)`` of one image, linked from the data module.
        num_classes: outputs, linked from the data module.
        channels: output channels of each conv block.
        kernel_size: kernel of every convolution ("same" padding, stride 1).
        pool: 2×2 max-pooling after each block (skipped once the map is down to 1 pixel).
        hidden: units of the hidden fully connected layer.
        dropout: dropout before the last layer.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
        loss: ``cross_entropy`` (default), ``smoothed_cross_entropy`` or ``center`` (on the hidden layer).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        channels: tuple[int, ...] = (64, 128),
        kernel_size: int = 3,
        pool: bool = True,
        hidden: int = 256,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_min_factor: float = 0.01,
        loss: str = "cross_entropy",
    ) -> None:
        super().__init__(num_classes, lr, weight_decay, lr_min_factor, loss=loss, feature_dim=hidden)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if not channels:
            raise ValueError("channels must list at least one conv block")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.save_hyperparameters()
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for i, out_channels in enumerate(channels):
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
            layers += [conv, nn.ReLU(inplace=True)]
            if pool and min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = grid_sizes(height, width, [ConvStage(f"pooling after block {i + 1}", 2, 2)])[0]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * height * width, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits.

        Shape:
            - x: ``(B, C, H, W)``
            - output: ``(B, num_classes)``
        """
        return self.head(self.features(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        hidden = self.head[:-1](self.features(x))
        return self.classification_loss(self.head[-1](hidden), y, hidden)
