"""``linear_ae``: linear autoencoders for several k, measured against the truncated SVD they should equal."""

from __future__ import annotations

import inspect
import math

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchmetrics import MeanSquaredError

from lit_modules.components.linear_autoencoder import LinearAutoencoder
from lit_modules.components.subspace import SVD_METHODS, principal_angles, project, top_right_singular_vectors
from litsuite.checkpoint_io import CheckpointMismatch
from optimizers.gauss_newton import LinearAEGaussNewton, SVRGSnapshot, code_covariance

OPTIMIZERS = ("gauss_newton", "adam")


class LinearAE(LightningModule):
    """Trains one linear autoencoder per k (``k`` plus the ``sweep`` sizes) side by side.

    The autoencoders share nothing but the batches, so each gets exactly the gradient it would
    get alone. Before training, the top right singular vectors of the training matrix are
    computed once and kept as a buffer (so checkpoints carry the baseline). Validation and test
    report, per k, the error ratio ‖X − X C D‖² / ‖X − X V_k V_kᵀ‖² (→ 1) and the largest principal
    angle between span(Dᵀ) and span(V_k) (→ 0°).

    Args:
        input_shape: shape of one sample, linked from the data module; flattened to n features.
        k: the main code size; its error ratio is the monitored ``val/error_ratio``.
        sweep: further code sizes trained alongside, for the error-ratio-versus-k report.
        optimizer: ``gauss_newton`` (:class:`optimizers.gauss_newton.LinearAEGaussNewton`: Gauss–Newton
            steps with SVRG and momentum, constant ``lr``) or ``adam`` (cosine schedule). Adam finds
            the reconstruction error quickly but the subspace only slowly where σ_k ≈ σ_{k+1}
            (see the optimiser's docstring); Gauss–Newton resolves such near-ties in a few epochs.
        lr: step size (Gauss–Newton: η, about 0.1; Adam: its learning rate, about 1e-3).
        momentum: Gauss–Newton's heavy-ball momentum.
        lr_min_factor: Adam's cosine schedule ends at ``lr * lr_min_factor``.
        svd_method: ``full`` (``torch.linalg.svd``) or ``lowrank`` (``torch.svd_lowrank``) for the baseline.
    """

    # The only buffers are the SVD baseline, broadcast once by fit_svd_baseline and constant after:
    # DDP's default re-broadcast of every buffer before every forward pass would be pure overhead.
    # (torch >= 2.14 names the switch forward_sync_buffers and deprecates broadcast_buffers.)
    ddp_options = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 8, 8),
        k: int = 16,
        sweep: tuple[int, ...] = (4, 8, 16, 64),
        optimizer: str = "gauss_newton",
        lr: float = 0.1,
        momentum: float = 0.9,
        lr_min_factor: float = 0.01,
        svd_method: str = "full",
    ) -> None:
        super().__init__()
        if svd_method not in SVD_METHODS:
            raise ValueError(f"svd_method must be one of {SVD_METHODS}, got '{svd_method}'")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got '{optimizer}'")
        self.save_hyperparameters()
        n = math.prod(input_shape)
        if not 0 < k <= n:
            raise ValueError(f"k must lie in 1..{n} (the number of input features of {tuple(input_shape)}), got {k}")
        self.ks = sorted({k, *(s for s in sweep if 0 < s < n)})
        self.autoencoders = nn.ModuleDict({str(s): LinearAutoencoder(n, s) for s in self.ks})
        self.register_buffer("singular_vectors", torch.zeros(n, max(self.ks)))
        self.register_buffer("singular_values", torch.zeros(min(n, max(self.ks) + 1)))
        self.register_buffer("baseline_ready", torch.tensor(False))
        if optimizer == "gauss_newton":
            self.snapshots = nn.ModuleDict({str(s): SVRGSnapshot(n, s) for s in self.ks})
            self.register_buffer("snapshot_epoch", torch.tensor(-1))
            # Zero k×k parameters whose gradients are the batches' code covariances (optimizers/gauss_newton.py).
            self.covariance_probes = nn.ParameterDict({str(s): nn.Parameter(torch.zeros(s, s)) for s in self.ks})
            # The encoder's Gauss–Newton step needs no gradient: skip its half of the backward pass
            # and of DDP's all-reduce. (DDP still broadcasts it at the start; every rank then takes
            # the same data-free step from the same averaged decoder.)
            for ae in self.autoencoders.values():
                ae.encoder.requires_grad_(False)
        self.mse = nn.ModuleDict(
            {
                f"{stage}_{kind}_{s}": MeanSquaredError()
                for stage in ("val", "test")
                for kind in ("ae", "svd")
                for s in self.ks
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction by the main autoencoder; ``x`` of shape (b, *input_shape)."""
        return self.autoencoders[str(self.hparams.k)](x.flatten(1)).view_as(x)

    @torch.no_grad()
    def fit_svd_baseline(self, dataloader) -> None:
        """Compute V_k of the training matrix; under DDP rank zero's result is broadcast to all ranks."""
        matrix = torch.cat([batch[0].flatten(1) for batch in dataloader]).to(self.device, torch.float64)
        extended = top_right_singular_vectors(matrix, len(self.singular_values), self.hparams.svd_method)
        values = torch.linalg.norm(matrix @ extended, dim=0)  # ‖M v_i‖ = σ_i
        basis = extended[:, : max(self.ks)]
        if self._trainer is not None:
            basis, values = self.trainer.strategy.broadcast((basis, values))
        self.singular_vectors.copy_(basis)
        self.singular_values.copy_(values)
        self.baseline_ready.fill_(True)

    def on_fit_start(self) -> None:
        if not self.baseline_ready:
            self.fit_svd_baseline(self.trainer.datamodule.train_dataloader())

    @property
    def uses_gauss_newton(self) -> bool:
        return self.hparams.optimizer == "gauss_newton"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trained_with = checkpoint.get("hyper_parameters", {}).get("optimizer", "adam")  # older runs: Adam
        resuming = self._trainer is not None and self.trainer.training and "optimizer_states" in checkpoint
        if resuming and trained_with != self.hparams.optimizer:
            raise CheckpointMismatch(
                f"this checkpoint was trained with --model.optimizer {trained_with}, whose state does not fit "
                f"{self.hparams.optimizer}: resume it with --model.optimizer {trained_with}"
            )
        # Checkpoints written before the Gauss–Newton optimiser existed hold no SVRG snapshot or probes:
        # start from empty ones (refreshed at the next epoch start) rather than refuse to load them.
        state = checkpoint.get("state_dict", {})
        for name, value in self.state_dict().items():
            if name.startswith(("snapshots.", "snapshot_epoch", "covariance_probes.")):
                state.setdefault(name, value)

    def on_train_epoch_start(self) -> None:
        # SVRG snapshot at every epoch start; a run resumed mid-epoch keeps the one in its checkpoint.
        if self.uses_gauss_newton and int(self.snapshot_epoch) != self.current_epoch:
            self.refresh_snapshots(self.trainer.datamodule.train_dataloader())

    @torch.no_grad()
    def refresh_snapshots(self, dataloader) -> None:
        """Snapshot every autoencoder and its full-data gradient; under DDP rank zero's result is broadcast."""
        batches = [batch[0].flatten(1).to(self.device) for batch in dataloader]
        for s, ae in self.autoencoders.items():
            snapshot = self.snapshots[s]
            snapshot.refresh(ae.encoder, ae.decoder, batches)
            if self._trainer is not None:
                snapshot.gradient.copy_(self.trainer.strategy.broadcast(snapshot.gradient))
        self.snapshot_epoch.fill_(self.current_epoch if self._trainer is not None else 0)

    def training_losses(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Per-k mean squared errors, and the loss to differentiate.

        Under Gauss–Newton the loss also holds, per autoencoder, ⟨D, (2/n)(g̃ − ∇_batch(C̃, D̃))⟩, so
        that the decoder's gradient is the SVRG estimate, and ⟨P₀, A_batch⟩ with the zero covariance
        probe P₀, whose gradient hands the batch code covariance to the optimiser. Neither changes
        the loss's value beyond the control term; data parallelism averages both gradients.

        Shape:
            x: (b, n).
        """
        losses, total = {}, x.new_zeros(())
        for s, ae in self.autoencoders.items():
            codes = ae.encode(x)
            losses[int(s)] = nn.functional.mse_loss(codes @ ae.decoder, x)
            total = total + losses[int(s)]
            if self.uses_gauss_newton:
                control = self.snapshots[s].control_variate(x) * (2.0 / x.shape[1])
                probe = self.covariance_probes[s]
                total = total + (ae.decoder * control).sum() + (probe * code_covariance(codes.detach())).sum()
        return losses, total

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if not self.uses_gauss_newton:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_val:  # the decoders' gradients only: the probes' are covariances, not steps
            decoders = [ae.decoder for ae in self.autoencoders.values()]
            if gradient_clip_algorithm == "value":
                nn.utils.clip_grad_value_(decoders, gradient_clip_val)
            else:
                nn.utils.clip_grad_norm_(decoders, gradient_clip_val)

    def training_step(self, batch, batch_idx):
        losses, total = self.training_losses(batch[0].flatten(1))
        self.log("train/loss", losses[self.hparams.k], prog_bar=True)
        return total

    def _evaluate(self, batch, stage: str) -> None:
        x = batch[0].flatten(1)
        for s in self.ks:
            self.mse[f"{stage}_ae_{s}"].update(self.autoencoders[str(s)](x), x)
            self.mse[f"{stage}_svd_{s}"].update(project(x, self.singular_vectors[:, :s]), x)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def spectral_gap(self, k: int) -> float:
        """σ_k² / σ_{k+1}² of the training matrix: near 1, the top-k subspace is barely determined."""
        if k >= len(self.singular_values):
            return math.inf
        return (self.singular_values[k - 1] / self.singular_values[k]).pow(2).item()

    def max_angle_degrees(self, k: int) -> float:
        """Largest principal angle between the k-autoencoder's decoder subspace and span(V_k), in degrees."""
        basis = self.autoencoders[str(k)].decoder_basis().detach()
        return math.degrees(principal_angles(basis, self.singular_vectors[:, :k]).max().item())

    def _log_epoch(self, stage: str) -> None:
        for s in self.ks:
            ratio = self.mse[f"{stage}_ae_{s}"].compute() / self.mse[f"{stage}_svd_{s}"].compute()
            angle = self.max_angle_degrees(s)
            main = s == self.hparams.k
            self.log(f"{stage}/error_ratio_k{s}", ratio, sync_dist=True)  # already synced; silences the DDP hint
            self.log(f"{stage}/max_angle_deg_k{s}", angle, sync_dist=True)
            if main:
                self.log(f"{stage}/error_ratio", ratio, prog_bar=True, sync_dist=True)
                self.log(f"{stage}/max_angle_deg", angle, prog_bar=True, sync_dist=True)
            self.mse[f"{stage}_ae_{s}"].reset()
            self.mse[f"{stage}_svd_{s}"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        if self.uses_gauss_newton:
            triples = [(ae.encoder, ae.decoder, self.covariance_probes[s]) for s, ae in self.autoencoders.items()]
            return LinearAEGaussNewton(triples, lr=self.hparams.lr, momentum=self.hparams.momentum)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        total = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total), eta_min=self.hparams.lr * self.hparams.lr_min_factor
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
