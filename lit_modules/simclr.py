"""``simclr``: contrastive learning of image features from two augmented views (Chen et al. 2020),
trained with FlatNCE (Chen et al. 2021) or InfoNCE, with an online linear classifier alongside."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_modules.components.backbones import ProjectionHead, build_backbone
from lit_modules.components.simclr_augment import SimCLRAugment
from losses.contrastive import flatnce, infonce
from optimizers.schedules import warmup_cosine


def split_decay_groups(modules: list[nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(weights, exempt)``: matrices and kernels, which get weight decay and LARS's trust ratio,
    and biases and normalisation scales (one dimension), which get neither; adapting those costs
    SimCLR several points of accuracy (solo-learn #305)."""
    weights, exempt = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (weights if p.ndim > 1 else exempt).append(p)
    return weights, exempt


class SimCLR(LightningModule):
    """SimCLR: backbone f, projection head g, contrastive loss between the two views' g(f(x)).

    Each training batch ``(x, y)`` is augmented twice on the training device
    (:class:`~lit_modules.components.simclr_augment.SimCLRAugment`, parameters drawn per image),
    both views go through the backbone in one pass, and the loss contrasts each view with the
    other view of its image against every other view in the batch, gathered from all processes
    under DDP. Labels are used only by the online linear classifier, which learns from the
    detached features of both views (no gradient reaches the backbone) and is evaluated on the
    un-augmented validation images: its ``val/acc`` tracks the features' quality during training
    and is the checkpoint monitor, as in solo-learn.

    Logged: ``train/loss`` (the optimised contrastive loss; always 1 for FlatNCE),
    ``train/infonce`` (InfoNCE of the same scores, for either loss), ``train/classifier_loss``,
    ``train/acc``, ``train/grad_norm`` (norm of the backbone and head gradient), ``val/infonce``
    (on two views drawn from a fixed seed, comparable between epochs), ``val/acc``.

    Args:
        input_shape: ``(C, H, W)``, linked from the data module.
        num_classes: classes of the online classifier, linked from the data module.
        backbone: a name from :data:`~lit_modules.components.backbones.BACKBONES`.
        projection_dim: width of the contrastive space (SimCLR: 128).
        projection_hidden: hidden width of the projection head.
        temperature: τ of the scores (0.1, FlatCLR's default).
        loss: ``flatnce`` or ``infonce``.
        gather_negatives: under DDP, take negatives from every process (the point of large batches).
        optimizer: ``lars`` (timm's LARS, SGD with layer-wise trust ratios), ``sgd`` or ``adamw``.
        lr: base learning rate, used as given (scale it with the global batch yourself, e.g.
            0.3 × batch / 256 for LARS as in SimCLR).
        weight_decay: on weights only, not on biases or normalisation scales.
        momentum: for ``lars`` and ``sgd``.
        warmup_epochs: linear warm-up, then a cosine decay to 0 per step.
        classifier_lr: learning rate of the online classifier (no decay, no trust ratio).
        strength, crop_scale, blur: the augmentation's colour strength, crop area range, and blur
            (``None``: by image size); see :class:`SimCLRAugment`.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        backbone: str = "small_cnn",
        projection_dim: int = 128,
        projection_hidden: int = 512,
        temperature: float = 0.1,
        loss: Literal["flatnce", "infonce"] = "flatnce",
        gather_negatives: bool = True,
        optimizer: Literal["lars", "sgd", "adamw"] = "lars",
        lr: float = 0.3,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        warmup_epochs: float = 10.0,
        classifier_lr: float = 0.1,
        strength: float = 0.5,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        blur: bool | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.save_hyperparameters()
        self.augment = SimCLRAugment(tuple(input_shape), strength=strength, crop_scale=tuple(crop_scale), blur=blur)
        self.backbone = build_backbone(backbone, input_shape[0])
        self.projector = ProjectionHead(self.backbone.feature_dim, projection_hidden, projection_dim)
        self.classifier = nn.Linear(self.backbone.feature_dim, num_classes)
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in ("train", "val")}
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features, the representation used downstream (probes, k-NN).

        Shape:
            - images: ``(B, C, H, W)``
            - output: ``(B, feature_dim)``
        """
        return self.backbone(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length projections, the space the loss contrasts in.

        Shape:
            - images: ``(B, C, H, W)``
            - output: ``(B, projection_dim)``
        """
        return F.normalize(self.projector(self.backbone(images)), dim=1)

    def contrast(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss to optimise, InfoNCE value, features of both views)`` for two views of a batch."""
        features = self.backbone(torch.cat([view1, view2]))
        z1, z2 = self.projector(features).chunk(2)
        tau, gather = self.hparams.temperature, self.hparams.gather_negatives
        if self.hparams.loss == "flatnce":
            loss, info = flatnce(z1, z2, tau, gather=gather)
        else:
            loss = infonce(z1, z2, tau, gather=gather)
            info = loss.detach()
        return loss, info, features

    def training_step(self, batch, batch_idx):
        images, labels = batch[0], batch[1]
        view1, view2 = self.augment.views(images)
        loss, info, features = self.contrast(view1, view2)
        logits = self.classifier(features.detach())
        targets = labels.repeat(2)
        classifier_loss = F.cross_entropy(logits, targets)
        self.accuracy["train_acc"].update(logits.detach(), targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/infonce", info, prog_bar=True)
        self.log("train/classifier_loss", classifier_loss)
        self.log("train/acc", self.accuracy["train_acc"], on_step=False, on_epoch=True)
        return loss + classifier_loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Every step (a few hundred small norms, far below a step's cost): Lightning keeps only the
        # values of the steps it writes, which a modulo here could miss.
        grads = [p.grad for m in (self.backbone, self.projector) for p in m.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    def validation_step(self, batch, batch_idx):
        images, labels = batch[0], batch[1]
        # Views from a fixed seed per batch, drawn without touching the training random stream:
        # val/infonce is then comparable between epochs, and validation leaves training unchanged.
        devices = [images.device.index or 0] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_idx)
            view1, view2 = self.augment.views(images)
        _, info, _ = self.contrast(view1, view2)
        logits = self.classifier(self.backbone(images.float()))
        self.accuracy["val_acc"].update(logits, labels)
        self.log("val/infonce", info, sync_dist=True)
        self.log("val/acc", self.accuracy["val_acc"], prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        weights, exempt = split_decay_groups([self.backbone, self.projector])
        groups = [
            {"params": weights, "weight_decay": hp.weight_decay, "always_adapt": True},
            {"params": exempt, "weight_decay": 0.0, "always_adapt": False},
            {"params": list(self.classifier.parameters()), "lr": hp.classifier_lr, "weight_decay": 0.0,
             "always_adapt": False},
        ]
        if hp.optimizer == "lars":
            from timm.optim import Lars

            optimizer = Lars(groups, lr=hp.lr, momentum=hp.momentum)
        else:
            for group in groups:
                group.pop("always_adapt")
            if hp.optimizer == "sgd":
                optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum)
            else:
                optimizer = torch.optim.AdamW(groups, lr=hp.lr)
        total = self.trainer.estimated_stepping_batches
        epochs = self.trainer.max_epochs
        bounded = total != float("inf")
        steps_per_epoch = total / epochs if bounded and epochs and epochs > 0 else self.trainer.num_training_batches
        warmup = round(hp.warmup_epochs * steps_per_epoch) if steps_per_epoch != float("inf") else 0
        total_steps = int(total) if bounded else None
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
