"""``capsule_em``: matrix capsules with EM routing and the spread loss (Hinton, Sabour and Frosst, ICLR 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lit_modules.classifier import ImageClassifier
from lit_modules.components.capsules.em_routing import DEFAULT_LAMBDA_SCALE
from lit_modules.components.capsules.layers import ClassMatrixCaps, ConvMatrixCaps, PrimaryMatrixCaps
from lit_modules.components.conv_geometry import ConvStage, grid_sizes
from losses.spread import spread_loss, spread_margin


class MatrixCapsNet(ImageClassifier):
    """ReLU conv (A) → primary matrix capsules (B) → ConvCaps1 (C) → ConvCaps2 (D) → class capsules.

    Every capsule is a 4×4 pose and an activation; the capsule layers route by EM with learned
    β_u, β_a per output type, and the class layer adds the scaled receptive-field centres to the
    votes (coordinate addition). The class activations are the scores. The defaults are the
    paper's smallNORB network on 32×32 crops: A = B = C = D = 32, conv 5×5 stride 2, K = 3,
    strides 2 and 1. Small images need other strides (the error says which layer does not fit).

    Spread loss margin: ``m`` rises linearly from ``margin_start`` to ``margin_end`` over the first
    ``margin_ramp`` fraction of the optimiser steps (``trainer.estimated_stepping_batches``). It is
    recomputed from ``global_step`` before every step and kept in a buffer, so a checkpoint holds
    it and a resumed run continues from the same value.

    Args:
        input_shape: ``(C, H, W)`` of one image, linked from the data module.
        num_classes: class capsules, linked from the data module.
        conv_channels: A, channels of the ReLU convolution.
        conv_kernel: its kernel size.
        conv_stride: its stride.
        conv_padding: its zero padding.
        primary_types: B, primary capsule types (1×1 convolutions: linear pose, sigmoid activation).
        caps1_types: C, capsule types of ConvCaps1.
        caps2_types: D, capsule types of ConvCaps2.
        caps_kernel: K, kernel of both convolutional capsule layers.
        caps1_stride: stride of ConvCaps1.
        caps2_stride: stride of ConvCaps2.
        iterations: EM routing iterations during training.
        coordinate_addition: add scaled positions to the class capsules' votes.
        lambda_scale: scale of the inverse-temperature schedule of EM routing; small networks,
            whose parents have few children, may need a smaller value (e.g. 1) for their class
            activations not to saturate at initialisation.
        variance_floor: ``epsilon`` added to every parent's pose variances in EM routing. It bounds
            ``log sigma`` from below: a parent that explains only a few votes has a near-zero
            variance, hence a very negative cost and an activation as high as a parent that
            explains many, so with a tiny floor the losing class capsules stay near 0.5 and the
            spread loss's margin is never met (on digits: 94 % test with 1e-6, 95.5–97.8 % with 1e-3).
        margin_start: spread loss margin at the first step.
        margin_end: spread loss margin at the end of the ramp.
        margin_ramp: fraction of training over which the margin rises.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 32, 32),
        num_classes: int = 5,
        conv_channels: int = 32,
        conv_kernel: int = 5,
        conv_stride: int = 2,
        conv_padding: int = 0,
        primary_types: int = 32,
        caps1_types: int = 32,
        caps2_types: int = 32,
        caps_kernel: int = 3,
        caps1_stride: int = 2,
        caps2_stride: int = 1,
        iterations: int = 3,
        coordinate_addition: bool = True,
        lambda_scale: float = DEFAULT_LAMBDA_SCALE,
        variance_floor: float = 1e-3,
        margin_start: float = 0.2,
        margin_end: float = 0.9,
        margin_ramp: float = 1.0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        lr_min_factor: float = 0.01,
    ) -> None:
        super().__init__(num_classes, lr, weight_decay, lr_min_factor)
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        if not variance_floor > 0.0:
            raise ValueError(f"variance_floor must be positive, got {variance_floor}")
        if not 0.0 < margin_ramp <= 1.0:
            raise ValueError(f"margin_ramp must lie in (0, 1], got {margin_ramp}")
        self.save_hyperparameters()
        channels, height, width = input_shape
        stages = [
            ConvStage("ReLU conv", conv_kernel, conv_stride, conv_padding),
            ConvStage("ConvCaps1", caps_kernel, caps1_stride),
            ConvStage("ConvCaps2", caps_kernel, caps2_stride),
        ]
        hint = (
            "Choose --model.conv_kernel/conv_stride/conv_padding, --model.caps_kernel and "
            "--model.caps1_stride/caps2_stride that fit "
            "(8×8 digits: conv 3×3 stride 1, capsule strides 1 and 1)."
        )
        self.grid_sizes = grid_sizes(height, width, stages, hint)
        self.conv = nn.Sequential(
            nn.Conv2d(channels, conv_channels, conv_kernel, conv_stride, conv_padding), nn.ReLU(inplace=True)
        )
        self.primary = PrimaryMatrixCaps(conv_channels, primary_types)
        routing = {"iterations": iterations, "lambda_scale": lambda_scale, "eps": variance_floor}
        self.caps1 = ConvMatrixCaps(primary_types, caps1_types, caps_kernel, caps1_stride, **routing)
        self.caps2 = ConvMatrixCaps(caps1_types, caps2_types, caps_kernel, caps2_stride, **routing)
        self.class_caps = ClassMatrixCaps(caps2_types, num_classes, coordinate_addition=coordinate_addition, **routing)
        self.register_buffer("margin", torch.tensor(float(margin_start)))

    @property
    def routing_layers(self) -> tuple[nn.Module, ...]:
        return self.caps1, self.caps2, self.class_caps

    @property
    def routing_iterations(self) -> int:
        """EM iterations used by every capsule layer now; set it to evaluate with another count."""
        return self.class_caps.iterations

    @routing_iterations.setter
    def routing_iterations(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"EM routing needs at least one iteration, got {value}")
        for layer in self.routing_layers:
            layer.iterations = int(value)

    def capsules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class poses and activations.

        Shape:
            - x: ``(B, C, H, W)``
            - poses: ``(B, num_classes, 4, 4)``
            - activations: ``(B, num_classes)``
        """
        poses, activations = self.primary(self.conv(x))
        poses, activations = self.caps1(poses, activations)
        poses, activations = self.caps2(poses, activations)
        return self.class_caps(poses, activations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class activations, the model's class scores.

        Shape:
            - x: ``(B, C, H, W)``
            - output: ``(B, num_classes)``
        """
        return self.capsules(x)[1]

    def margin_at(self, step: int, total_steps: float) -> float:
        """The spread loss margin after ``step`` of ``total_steps`` optimiser steps."""
        hp = self.hparams
        progress = step / max(hp.margin_ramp * total_steps, 1.0)
        return spread_margin(progress, hp.margin_start, hp.margin_end)

    def on_fit_start(self) -> None:
        if not math.isfinite(self.trainer.estimated_stepping_batches):
            raise ValueError(
                "the spread loss margin rises over the whole run, which needs an end: "
                "set --trainer.max_epochs or --trainer.max_steps"
            )

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.margin.fill_(self.margin_at(self.global_step, self.trainer.estimated_stepping_batches))

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        activations = self(x)
        # Activations are probabilities; keep the loss in fp32 under mixed precision.
        loss = spread_loss(activations.float(), y, float(self.margin))
        return loss, activations, {"spread_margin": self.margin.clone()} if self.training else {}
