"""``cnn_baseline``: a plain convolutional classifier, trained like the capsule networks, to compare against."""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.classifier import ImageClassifier
from lit_modules.components.conv_geometry import ConvStage, grid_sizes
from lit_modules.components.su_convnet import MIN_SIDE, SuConvFrontEnd
from losses.classification import CLASSIFICATION_LOSSES
from losses.margin import margin_loss

FEATURES = ("blocks", "su")
LOSSES = (*CLASSIFICATION_LOSSES, "margin")


class CNNBaseline(ImageClassifier):
    """Conv blocks (conv, ReLU, optional 2×2 max-pooling) → fully connected → logits, cross-entropy.

    Same optimiser, schedule, data and metrics as ``capsule`` and ``capsule_em`` (all three share
    :class:`~lit_modules.classifier.ImageClassifier`); only the network and the loss differ. Its
    class scores for the overlap test are the logits. Pooling is what Su's overlap experiment
    used for the CNN, and is what throws away where a feature was.

    Su's CNN for that test is ``features="su"`` (his capsule network's four convs and average
    pooling, :class:`~lit_modules.components.su_convnet.SuConvFrontEnd`, then a global average
    pool, so it takes any image size from 14×14 up) with ``loss="margin"``: the class scores are
    then sigmoids, one independent probability per class, trained with the capsules' margin loss.

    Args:
        input_shape: ``(C, H, W)`` of one image, linked from the data module.
        num_classes: outputs, linked from the data module.
        channels: output channels of each conv block.
        kernel_size: kernel of every convolution ("same" padding, stride 1).
        pool: 2×2 max-pooling after each block (skipped once the map is down to 1 pixel).
        features: ``"blocks"`` (the ``channels``/``kernel_size``/``pool`` blocks, flattened) or ``"su"``
            (Su's front end with ``frontend_channels``, globally average-pooled).
        frontend_channels: ``(c1, c2)`` of the ``"su"`` features.
        hidden: units of the hidden fully connected layer.
        dropout: dropout before the last layer.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
        loss: ``cross_entropy`` (default), ``smoothed_cross_entropy``, ``center`` (on the hidden layer) or
            ``margin`` (sigmoid scores, :func:`~losses.margin.margin_loss` with ``margin_lambda``).
        margin_lambda: down-weighting of the absent classes in the margin loss (Su's test: 0.25).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        channels: tuple[int, ...] = (64, 128),
        kernel_size: int = 3,
        pool: bool = True,
        features: str = "blocks",
        frontend_channels: tuple[int, int] = (64, 128),
        hidden: int = 256,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_min_factor: float = 0.01,
        loss: str = "cross_entropy",
        margin_lambda: float = 0.5,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got '{loss}'")
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got '{features}'")
        # The margin loss is computed here; the shared criterion is then plain cross-entropy, unused.
        shared_loss = "cross_entropy" if loss == "margin" else loss
        super().__init__(num_classes, lr, weight_decay, lr_min_factor, loss=shared_loss, feature_dim=hidden)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if not channels:
            raise ValueError("channels must list at least one conv block")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.save_hyperparameters()
        in_channels, height, width = input_shape
        if features == "su":
            if min(height, width) < MIN_SIDE:
                raise ValueError(f"features 'su' need images of at least {MIN_SIDE}×{MIN_SIDE}, got {height}×{width}")
            frontend = SuConvFrontEnd(in_channels, tuple(frontend_channels))
            self.features = nn.Sequential(frontend, nn.AdaptiveAvgPool2d(1))
            in_channels, height, width = frontend.out_channels, 1, 1
        else:
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

    @property
    def scores_are_probabilities(self) -> bool:
        """Whether :meth:`forward`'s scores lie in [0, 1]: sigmoids with the margin loss, logits otherwise."""
        return self.hparams.loss == "margin"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or with ``loss="margin"`` their sigmoids.

        Shape:
            - x: ``(B, C, H, W)``
            - output: ``(B, num_classes)``
        """
        logits = self.head(self.features(x))
        return torch.sigmoid(logits) if self.hparams.loss == "margin" else logits

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        hidden = self.head[:-1](self.features(x))
        logits = self.head[-1](hidden)
        if self.hparams.loss == "margin":
            scores = torch.sigmoid(logits)
            margin = margin_loss(scores, y, lam=self.hparams.margin_lambda)
            return margin, scores, {"margin_loss": margin}
        return self.classification_loss(logits, y, hidden)
