"""``capsule``: CapsNet with dynamic routing and a reconstruction decoder (Sabour, Frosst and Hinton, 2017)."""

from __future__ import annotations

import torch
from torch import nn

from lit_modules.classifier import ImageClassifier
from lit_modules.components.capsule_decoder import CapsuleDecoder, reconstruction_sse
from lit_modules.components.capsules.layers import DenseCapsules, PrimaryCaps
from lit_modules.components.conv_geometry import ConvStage, grid_sizes
from lit_modules.components.su_convnet import MIN_SIDE, PositionCapsules, SuConvFrontEnd
from losses.margin import margin_loss

ROUTINGS = ("sabour", "su")
FRONTENDS = ("sabour", "su")


class CapsNet(ImageClassifier):
    """ReLU conv → primary capsules → class capsules by routing-by-agreement → optional decoder.

    The loss is the margin loss on the class capsule lengths plus ``reconstruction_weight`` ×
    the summed squared error of the reconstruction (mean over the batch), the decoder being fed
    only the capsule of the true class. The paper's network is the default: 256 channels 9×9,
    32 types of 8-D primary capsules (9×9, stride 2), 16-D class capsules, 3 iterations.

    Routing ``"su"`` is Su Jianlin's K-Means form; with it the primary capsules are squashed with
    his softer ``‖s‖²/(0.5 + ‖s‖²)``, so both stages use one non-linearity. The number of
    routing iterations can be changed after training through :attr:`routing_iterations`.

    Front end ``"su"`` is Su's network instead of the conv/primary-capsule stages: four 3×3 convs
    with an average pooling (:class:`~lit_modules.components.su_convnet.SuConvFrontEnd`), every
    position's ``frontend_channels[1]``-vector one (unsquashed) input capsule. It needs
    ``shared_weights`` and then takes images of any size from 14×14 up, e.g. two stacked images.

    Args:
        input_shape: ``(C, H, W)`` of one image, linked from the data module.
        num_classes: class capsules, linked from the data module.
        conv_channels: channels of the first convolution.
        conv_kernel: its kernel size (stride 1, no padding).
        primary_types: primary capsule types per grid position.
        primary_dim: dimension of a primary capsule.
        primary_kernel: kernel of the primary capsule convolution (no padding).
        primary_stride: its stride.
        class_dim: dimension of a class capsule.
        routing: ``"sabour"`` or ``"su"``.
        iterations: routing iterations during training.
        shared_weights: one vote matrix per class shared by all primary capsules (Su's default)
            instead of one per (primary capsule, class) pair.
        frontend: ``"sabour"`` (conv + primary capsules, the ``conv_*``/``primary_*`` arguments) or ``"su"``.
        frontend_channels: ``(c1, c2)`` of the ``"su"`` front end; ``c2`` is the input capsule dimension.
        decoder: add the reconstruction decoder and its loss term.
        decoder_hidden: the decoder's two hidden layer sizes.
        reconstruction_weight: weight of the reconstruction error.
        m_plus: margin loss target length of the true class.
        m_minus: margin loss ceiling of the other classes.
        margin_lambda: down-weighting of the other classes in the margin loss.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
    """

    scores_are_probabilities = True  # capsule lengths lie in [0, 1)

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        conv_channels: int = 256,
        conv_kernel: int = 9,
        primary_types: int = 32,
        primary_dim: int = 8,
        primary_kernel: int = 9,
        primary_stride: int = 2,
        class_dim: int = 16,
        routing: str = "sabour",
        iterations: int = 3,
        shared_weights: bool = False,
        frontend: str = "sabour",
        frontend_channels: tuple[int, int] = (64, 128),
        decoder: bool = True,
        decoder_hidden: tuple[int, int] = (512, 1024),
        reconstruction_weight: float = 0.0005,
        m_plus: float = 0.9,
        m_minus: float = 0.1,
        margin_lambda: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_min_factor: float = 0.01,
    ) -> None:
        super().__init__(num_classes, lr, weight_decay, lr_min_factor)
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got '{routing}'")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        self.save_hyperparameters()
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got '{frontend}'")
        channels, height, width = input_shape
        squash_k = 1.0 if routing == "sabour" else 0.5
        if frontend == "su":
            if not shared_weights:
                raise ValueError("frontend 'su' reads a variable number of input capsules: set shared_weights true")
            if min(height, width) < MIN_SIDE:
                raise ValueError(f"frontend 'su' needs images of at least {MIN_SIDE}×{MIN_SIDE}, got {height}×{width}")
            self.conv = SuConvFrontEnd(channels, tuple(frontend_channels))
            self.primary = PositionCapsules()
            primary_dim = self.conv.out_channels
            self.num_primary = ((height - 4) // 2 - 4) * ((width - 4) // 2 - 4)
        else:
            stages = [ConvStage("conv", conv_kernel), ConvStage("primary capsules", primary_kernel, primary_stride)]
            hint = "Set smaller --model.conv_kernel / --model.primary_kernel / --model.primary_stride for small images."
            grid_h, grid_w = grid_sizes(height, width, stages, hint)[-1]
            self.conv = nn.Sequential(nn.Conv2d(channels, conv_channels, conv_kernel), nn.ReLU(inplace=True))
            self.primary = PrimaryCaps(
                conv_channels, primary_types, primary_dim, primary_kernel, primary_stride, squash_k
            )
            self.num_primary = primary_types * grid_h * grid_w
        self.class_caps = DenseCapsules(
            None if shared_weights else self.num_primary,
            primary_dim,
            num_classes,
            class_dim,
            routing=routing,
            iterations=iterations,
            shared_weights=shared_weights,
        )
        self.decoder = CapsuleDecoder(num_classes, class_dim, tuple(input_shape), decoder_hidden) if decoder else None

    @property
    def routing_iterations(self) -> int:
        """Routing iterations used by the class capsules now; set it to evaluate with another count."""
        return self.class_caps.iterations

    @routing_iterations.setter
    def routing_iterations(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"routing needs at least one iteration, got {value}")
        self.class_caps.iterations = int(value)

    def capsules(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class capsules and the coupling coefficients of the last routing iteration.

        Shape:
            - x: ``(B, C, H, W)``
            - capsules: ``(B, num_classes, class_dim)``
            - coupling: ``(B, num_primary, num_classes)``
        """
        return self.class_caps(self.primary(self.conv(x)))

    @staticmethod
    def lengths(capsules: torch.Tensor) -> torch.Tensor:
        """Capsule lengths; the epsilon keeps the gradient finite for a zero capsule.

        Shape:
            - capsules: ``(B, N, D)``
            - output: ``(B, N)``
        """
        return torch.sqrt(capsules.pow(2).sum(dim=-1) + 1e-9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class capsule lengths, the model's class scores.

        Shape:
            - x: ``(B, C, H, W)``
            - output: ``(B, num_classes)``
        """
        return self.lengths(self.capsules(x)[0])

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the capsule of ``labels`` (default: the predicted class).

        Shape:
            - x: ``(B, C, H, W)``
            - labels: ``(B,)``
            - output: ``(B, C, H, W)``
        """
        if self.decoder is None:
            raise RuntimeError("this CapsNet was built with decoder=False; it cannot reconstruct")
        capsules, _ = self.capsules(x)
        if labels is None:
            labels = self.lengths(capsules).argmax(dim=1)
        return self.decoder(capsules, labels)

    def loss(self, x: torch.Tensor, y: torch.Tensor):
        capsules, _ = self.capsules(x)
        lengths = self.lengths(capsules)
        hp = self.hparams
        margin = margin_loss(lengths, y, hp.m_plus, hp.m_minus, hp.margin_lambda)
        terms = {"margin_loss": margin}
        total = margin
        if self.decoder is not None:
            # The decoder always sees the true class's capsule: masking by the prediction would
            # train it on wrong capsules while the classifier is still poor.
            sse = reconstruction_sse(self.decoder(capsules, y), x)
            terms["reconstruction_sse"] = sse
            total = total + hp.reconstruction_weight * sse
        return total, lengths, terms
