"""The training loop shared by the image classifiers: metrics, logging, optimiser and schedule.

``capsule``, ``capsule_em`` and ``cnn_baseline`` differ only in their network and loss; keeping
the loop in one place means they are trained identically, which is what makes the overlap test
and the accuracy comparison between them fair.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from losses.classification import ClassificationLoss


class ImageClassifier(LightningModule):
    """Base class: subclasses build a network and implement :meth:`forward` and :meth:`loss`.

    ``forward(x)`` returns one score per class (capsule lengths, activations or logits): the
    prediction is the arg-max, and the overlap test reads the top two. Validation and test
    accuracy are torchmetrics objects, so they are synced across DDP ranks; the monitored
    metric is ``val/acc`` (mode max). The test split also fills :attr:`test_confusion`, a
    ``MulticlassConfusionMatrix`` the evaluation report reads after ``trainer.test``.

    Args:
        num_classes: number of classes.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        lr_min_factor: the per-step cosine schedule ends at ``lr * lr_min_factor``.
        loss: the loss :meth:`classification_loss` computes, one of
            :data:`losses.classification.CLASSIFICATION_LOSSES` (a subclass with a loss of its own,
            such as the capsules' margin loss, does not use it).
        feature_dim: dimension of the features the logits are computed from (the center loss needs it).
        class_weights: optional per-class weights of the loss.
        epsilon: label smoothing of ``smoothed_cross_entropy``.
        center_weight: λ of the ``center`` loss.
    """

    def __init__(
        self,
        num_classes: int,
        lr: float,
        weight_decay: float,
        lr_min_factor: float,
        loss: str = "cross_entropy",
        feature_dim: int | None = None,
        class_weights: torch.Tensor | None = None,
        epsilon: float = 0.1,
        center_weight: float = 0.2,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.lr, self.weight_decay, self.lr_min_factor = lr, weight_decay, lr_min_factor
        # Its parameters (the center loss's class centres) are trained by the model's optimiser.
        self.criterion = ClassificationLoss(loss, num_classes, feature_dim, epsilon, center_weight, class_weights)
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in ("train", "val", "test")}
        )
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores.

        Shape:
            - x: ``(B, *input_shape)``
            - output: ``(B, num_classes)``
        """
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(total loss, class scores, named loss terms to log)`` for a batch."""
        raise NotImplementedError

    def classification_loss(
        self, logits: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`loss`'s triple for a network with logits, using the configured ``loss``.

        Shape:
            - logits: ``(B, num_classes)``
            - y: ``(B,)``
            - features: ``(B, feature_dim)``, the input of the last linear layer
        """
        total, terms = self.criterion(logits, y, features)
        return total, logits, terms

    def _step(self, batch, stage: str) -> torch.Tensor:
        """Loss of the batch, logged with its terms and the accuracy; returns the loss in
        training and the (detached) class scores otherwise."""
        x, y = batch[0], batch[1]
        loss, scores, terms = self.loss(x, y)
        metric = self.accuracy[f"{stage}_acc"]
        metric.update(scores.detach(), y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/acc", metric, prog_bar=stage != "train", on_step=False, on_epoch=True)
        return loss if stage == "train" else scores.detach()

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_step(self, batch, batch_idx):
        scores = self._step(batch, "test")
        self.test_confusion.update(scores.argmax(dim=1), batch[1])

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = self.trainer.estimated_stepping_batches
        # With an unbounded run (max_epochs=-1) there is no end to anneal towards: keep lr constant.
        t_max = int(total) if total != float("inf") else 10**12
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, t_max), eta_min=self.lr * self.lr_min_factor
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def num_parameters(self) -> int:
        """Trainable parameters, for comparing model sizes."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
