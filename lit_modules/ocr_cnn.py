"""``ocr_cnn``: the CNN that reads single printed characters (Su Jianlin, kexue.fm/archives/3774–3856, 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lit_modules.classifier import ImageClassifier
from lit_modules.components.conv_geometry import ConvStage, grid_sizes
from losses.classification import frequency_class_weights


class OCRCNN(ImageClassifier):
    """Two valid 4×4 conv blocks with max-pooling and dropout → dense 1024 → logits over the charset.

    SPEC §1's network: Conv 64@4×4 valid → ReLU → MaxPool 2 → Dropout 0.25 → Conv 64@4×4 → ReLU →
    MaxPool 2 → Dropout 0.25 → Dense 1024 → ReLU → Dropout 0.5 → Dense C. The training loss is
    chosen by ``loss`` (cross-entropy, smoothed cross-entropy or center loss on the 1024-d
    features); each sample is weighted by its class's frequency weight
    :func:`~losses.classification.frequency_class_weights` (≈ 8:1 from the most to the least
    frequent character) unless ``frequency_weights`` is false. The charset travels in the
    checkpoint (``class_names``), so a reader needs nothing but the checkpoint.

    Args:
        input_shape: ``(1, 48, 48)``, linked from the data module.
        num_classes: charset size, linked from the data module.
        class_names: the characters, class index order, linked from the data module.
        class_frequency_ranks: frequency rank of each class (0 = most frequent), linked from the
            data module; without it the class index is the rank.
        channels: output channels of the two conv blocks.
        kernel_size: their kernel (valid padding).
        hidden: units of the dense layer.
        conv_dropout: dropout after each conv block.
        dropout: dropout before the last layer.
        frequency_weights: weight each sample by its class's frequency weight.
        loss: ``cross_entropy``, ``smoothed_cross_entropy`` (ε = ``epsilon``) or ``center`` (λ = ``center_weight``).
        epsilon: label smoothing.
        center_weight: weight λ of the center term.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 48, 48),
        num_classes: int = 3062,
        class_names: Sequence[str] | None = None,
        class_frequency_ranks: Sequence[int] | None = None,
        channels: tuple[int, int] = (64, 64),
        kernel_size: int = 4,
        hidden: int = 1024,
        conv_dropout: float = 0.25,
        dropout: float = 0.5,
        frequency_weights: bool = True,
        loss: str = "cross_entropy",
        epsilon: float = 0.1,
        center_weight: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_min_factor: float = 0.01,
    ) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names lists {len(class_names)} characters for {num_classes} classes")
        ranks = torch.arange(num_classes) if class_frequency_ranks is None else torch.as_tensor(class_frequency_ranks)
        if ranks.shape != (num_classes,):
            raise ValueError(
                f"class_frequency_ranks needs one rank per class ({num_classes}), got {tuple(ranks.shape)}"
            )
        ranks = ranks.argsort().argsort()  # dense 0..C-1, whatever scale the data module ranks on
        weights = frequency_class_weights(ranks, num_classes) if frequency_weights else None
        super().__init__(
            num_classes,
            lr,
            weight_decay,
            lr_min_factor,
            loss=loss,
            feature_dim=hidden,
            class_weights=weights,
            epsilon=epsilon,
            center_weight=center_weight,
        )
        self.save_hyperparameters()
        in_channels, height, width = input_shape
        stages = []
        for i in range(len(channels)):
            stages += [ConvStage(f"conv {i + 1}", kernel_size), ConvStage(f"pooling {i + 1}", 2, 2)]
        grid_h, grid_w = grid_sizes(height, width, stages, "Use 48×48 glyphs or a smaller --model.kernel_size.")[-1]
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Dropout(conv_dropout),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(in_channels * grid_h * grid_w, hidden), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    @property
    def charset(self) -> list[str]:
        """The characters of the classes, in class index order (empty if the run had none)."""
        return list(self.hparams.get("class_names") or [])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d features the logits are computed from (what the center loss pulls together).

        Shape:
            - x: ``(B, 1, 48, 48)``
            - output: ``(B, hidden)``
        """
        return self.hidden(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits.

        Shape:
            - x: ``(B, 1, 48, 48)``
            - output: ``(B, num_classes)``
        """
        return self.classifier(self.embed(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        features = self.embed(x)
        return self.classification_loss(self.classifier(features), y, features)
