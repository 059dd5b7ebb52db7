"""``wgan_gp``: WGAN-GP (Gulrajani et al. 2017) with Lightning's manual optimisation."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from evaluation.fid import fid_features, make_fid, standard_images
from evaluation.gan_figures import save_image_grid, save_points
from lit_modules.components.gan_networks import build_pair, resolve_network
from losses.gradient_penalty import PENALTY_FORMS, gradient_penalty_at, random_interpolates
from losses.wasserstein import generator_loss, wasserstein_estimate

LR_SCHEDULES = ("constant", "linear")


class WGANGP(LightningModule):
    """Generator and critic trained alternately: ``n_critic`` critic steps, then one generator step.

    Critic step (every batch): ``L_D = E[D(x̃)] − E[D(x)] + λ E[(‖∇D(x̂)‖₂ − 1)²]`` with
    ``x̂ = εx + (1 − ε)x̃``, one ε per sample (:mod:`losses.gradient_penalty`). The critic is
    evaluated on real and generated samples concatenated: it couples no samples (no BatchNorm), so
    the scores equal two separate passes. That saves kernel launches on a GPU; on a CPU one pass
    over 2B samples measured slower than two over B (width 64, batch 64, one thread: 67–78 against
    61–63 ms for forward and backward), so there it is two passes (``joint_critic_pass``).
    The interpolates get a pass of their own:
    the penalty's input gradient and its double backward run over every row of the graph they go
    through, so inside a joint pass they would also process the (zero-gradient) real and generated
    rows and cost three times as much. The generated samples are made without recording the
    generator's graph. The conv critic's activations (:class:`~lit_modules.components.gan_networks.CriticReLU`)
    keep the penalty's backward out of the interpolates' forward pass, where torch's own would send
    zeros through all of it.
    Generator step (after every ``n_critic``-th batch, counted by ``batch_idx``: ``global_step``
    counts both optimisers' steps): ``L_G = −E[D(G(z))]``, with the critic's weights switched off.

    Noise (z and ε) for the whole global batch is drawn from torch's generator, identically seeded
    on every rank, and each rank takes its slice: N ranks with B samples each draw exactly what one
    process with N·B would, and a resumed run (whose generator state the checkpoint restores) draws
    what the uninterrupted one did. Under DDP, :class:`litsuite.submodule_ddp.SubmoduleDDPStrategy`
    wraps ``generator`` and ``critic`` separately (``ddp_submodules``); the steps call the wrapped
    network only where its own weights are trained.

    Validation computes a Fréchet distance (:mod:`evaluation.fid`) between ``fid_samples`` validation
    samples and as many generated from fixed latents, logged as ``val/fid`` (the checkpoint monitor),
    and writes a grid of samples from fixed latents to ``<run>/samples/epoch_E-step_S.png``.

    Args:
        input_shape: shape of one sample, linked from the data module.
        network: ``auto`` (conv for images, mlp for vectors), ``conv`` or ``mlp``.
        latent_dim: size of z.
        width: conv: channels of the generator's last and the critic's first map; mlp: hidden units.
        critic_norm: ``none`` or ``layer`` (per-sample LayerNorm; never BatchNorm).
        n_critic: critic steps per generator step.
        gp_weight: λ.
        penalty_form: ``two_sided`` (the paper) or ``one_sided`` (Su's ``relu(‖∇D‖ − 1)``).
        lr: Adam learning rate of both networks.
        betas: Adam's β (the paper: (0, 0.9); Su: (0.5, 0.999)).
        lr_schedule: ``constant`` or ``linear`` (decay to 0 over the run, stepped per generator step).
        clip_grad_norm: clip each network's gradient norm to this before its step (None: off).
        ema_decay: decay of an exponential moving average of the generator's weights, used for
            samples and FID (0: off).
        num_fixed_samples: latents fixed at construction for the sample grids.
        fid_samples: real (and as many generated) samples per FID evaluation.
        fid_classifier: checkpoint of a classifier trained on the same data (domain FID).
        fid_weights: Inception weights file for the standard FID (needs torch-fidelity).
        joint_critic_pass: score real and generated samples in one critic pass (True) or two (False);
            None: one on GPUs, two on CPUs (see the class docstring).
    """

    ddp_submodules = ("generator", "critic")

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        network: str = "auto",
        latent_dim: int = 128,
        width: int = 64,
        critic_norm: str = "none",
        n_critic: int = 5,
        gp_weight: float = 10.0,
        penalty_form: str = "two_sided",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        lr_schedule: str = "constant",
        clip_grad_norm: float | None = None,
        ema_decay: float = 0.999,
        num_fixed_samples: int = 64,
        fid_samples: int = 2000,
        fid_classifier: str | None = None,
        fid_weights: str | None = None,
        joint_critic_pass: bool | None = None,
    ) -> None:
        super().__init__()
        if n_critic < 1:
            raise ValueError(f"n_critic must be at least 1 (critic steps per generator step), got {n_critic}")
        if penalty_form not in PENALTY_FORMS:
            raise ValueError(f"penalty_form must be one of {PENALTY_FORMS}, got '{penalty_form}'")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got '{lr_schedule}'")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        if gp_weight < 0 or latent_dim < 1 or width < 1 or fid_samples < 2:
            raise ValueError("gp_weight must be >= 0, latent_dim and width >= 1, fid_samples >= 2")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.network = resolve_network(network, tuple(input_shape))
        self.generator, self.critic = build_pair(self.network, tuple(input_shape), latent_dim, width, critic_norm)
        self.generator_ema = (
            AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay > 0
            else None
        )
        fixed = torch.randn(num_fixed_samples, latent_dim, generator=torch.Generator().manual_seed(20170331))
        self.register_buffer("fixed_latents", fixed)
        feature, self.fid_label = fid_features(tuple(input_shape), fid_classifier, fid_weights)
        # The metric (and the classifier inside it) stays out of the state dict and the DDP wrappers.
        object.__setattr__(self, "fid", make_fid(feature, fid_weights))
        self.ddp_wrappers: dict[str, torch.nn.Module] = {}  # filled by SubmoduleDDPStrategy under DDP
        self._fid_seen = 0

    # ------------------------------------------------------------------ sampling

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator used for samples and FID: the moving average when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """Samples from latents ``z`` ``(B, latent_dim)``, by :attr:`sampler`, in fp32."""
        return self.sampler(z.to(self.device)).float()

    def _trained(self, name: str) -> torch.nn.Module:
        """The network ``name`` as its own step must call it: DDP-wrapped when a strategy wrapped it."""
        return self.ddp_wrappers.get(name) or getattr(self, name)

    def _noise(self, shape: tuple[int, ...], uniform: bool = False) -> torch.Tensor:
        """This rank's slice of noise drawn for the whole global batch (see the class docstring)."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        draw = torch.rand if uniform else torch.randn
        return draw((world * shape[0], *shape[1:]), device=self.device).chunk(world)[rank]

    def _grad_scale(self) -> float | None:
        """The fp16 loss scale (``16-mixed``), applied around the penalty's gradient; None otherwise."""
        if self._trainer is None:  # called outside a Trainer (tests, benchmarks): fp32
            return None
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None

    # ------------------------------------------------------------------ training

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        opt_critic, opt_generator = self.optimizers()
        out = self._critic_step(real, opt_critic)
        if (batch_idx + 1) % self.hparams.n_critic == 0:
            out["generator_loss"] = self._generator_step(real.shape[0], opt_generator)
        return out

    def critic_objective(
        self, real: torch.Tensor, z: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(critic loss, Wasserstein estimate, weighted penalty)`` for real samples, latents and ε.

        Shape:
            - real: ``(B, *input_shape)``; z: ``(B, latent_dim)``; eps: ``(B,)``
        """
        with torch.no_grad():
            fake = self.generator(z).to(real.dtype)
        return self.critic_objective_on(real, fake, eps)

    def critic_objective_on(
        self, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`critic_objective` for generated samples made already (without a graph).

        Shape:
            - real, fake: ``(B, *input_shape)``; eps: ``(B,)``
        """
        b = real.shape[0]
        x_hat = random_interpolates(real, fake, eps=eps)
        critic = self._trained("critic")
        joint = self.hparams.joint_critic_pass
        if joint if joint is not None else real.device.type != "cpu":
            d_real, d_fake = critic(torch.cat([real, fake])).float().split(b)
        else:
            d_real, d_fake = critic(real).float(), critic(fake).float()
        d_hat = critic(x_hat).float()  # its own pass: see the class docstring
        hp = self.hparams
        penalty = gradient_penalty_at(d_hat, x_hat, hp.gp_weight, hp.penalty_form, self._grad_scale())
        wasserstein = wasserstein_estimate(d_real, d_fake)
        return penalty - wasserstein, wasserstein, penalty

    def generator_objective(self, z: torch.Tensor) -> torch.Tensor:
        """``−E[D(G(z))]`` through the trained generator and the plain critic (whose DDP reducer expects no backward).

        Shape:
            - z: ``(B, latent_dim)``
        """
        return generator_loss(self.critic(self._trained("generator")(z)).float())

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if clip := self.hparams.clip_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def _critic_step(self, real: torch.Tensor, optimizer) -> dict[str, torch.Tensor]:
        b = real.shape[0]
        z, eps = self._noise((b, self.hparams.latent_dim)), self._noise((b,), uniform=True)
        loss, wasserstein, penalty = self.critic_objective(real, z, eps)
        self._step(optimizer, loss)
        self.log_dict({"train/critic_loss": loss, "train/wasserstein": wasserstein, "train/gradient_penalty": penalty})
        self.log("train/W", wasserstein, prog_bar=True, logger=False)
        return {"critic_loss": loss.detach()}

    def _generator_step(self, batch_size: int, optimizer) -> torch.Tensor:
        z = self._noise((batch_size, self.hparams.latent_dim))
        with self.toggled_optimizer(optimizer):  # the critic's weights need no gradient here
            loss = self.generator_objective(z)
            self._step(optimizer, loss)
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
        self.log("train/generator_loss", loss)
        return loss.detach()

    def configure_optimizers(self):
        hp = self.hparams
        critic = torch.optim.Adam(self.critic.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        generator = torch.optim.Adam(self.generator.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        if hp.lr_schedule == "constant":
            return [critic, generator]
        total = self.trainer.estimated_stepping_batches
        steps = max(1, int(total) // hp.n_critic) if math.isfinite(total) else 10**12

        def linear(step: int) -> float:
            return max(0.0, 1.0 - step / steps)

        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, linear) for opt in (critic, generator)]
        return [critic, generator], schedulers

    # ------------------------------------------------------------------ FID (validation and test)

    def _fid_start(self) -> None:
        self.fid.to(self.device)
        self.fid.reset()
        self._fid_seen = 0
        # the same generated set at every evaluation, and no draw from the training noise stream
        self._fid_latents = torch.Generator().manual_seed(7919 + self.global_rank)

    def _fid_update(self, batch, limit: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        share = math.ceil(limit / self.trainer.world_size)
        real = real[: max(0, share - self._fid_seen)]
        if not len(real):
            return
        z = torch.randn(len(real), self.hparams.latent_dim, generator=self._fid_latents)
        inception = not self.fid.used_custom_model
        self.fid.update(standard_images(real.float(), inception), real=True)
        self.fid.update(standard_images(self.sample(z).to(real.device), inception), real=False)
        self._fid_seen += len(real)

    def _fid_value(self) -> torch.Tensor:
        if int(self.fid.real_features_num_samples) < 2 and self.trainer.world_size == 1:
            return torch.tensor(float("nan"), device=self.device)
        return self.fid.compute().float().to(self.device)  # synced over the ranks by torchmetrics

    def on_validation_epoch_start(self) -> None:
        self._fid_start()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._fid_update(batch, self.hparams.fid_samples)

    def on_validation_epoch_end(self) -> None:
        # already synced by torchmetrics; sync_dist only averages equal values (and keeps Lightning from warning)
        self.log("val/fid", self._fid_value(), prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            name = f"epoch_{self.current_epoch:04d}-step_{self.global_step:07d}.png"
            self.save_samples(Path(self.trainer.default_root_dir) / "samples" / name)

    def on_test_epoch_start(self) -> None:
        self._fid_start()

    def test_step(self, batch, batch_idx: int) -> None:
        # half the test set: the report's real-vs-real floor compares its two halves with the same count
        self._fid_update(batch, len(self.trainer.test_dataloaders.dataset) // 2)

    def on_test_epoch_end(self) -> None:
        self.log("test/fid", self._fid_value(), sync_dist=True)

    def save_samples(self, path: Path) -> Path:
        """Samples from the fixed latents as an image grid (images) or a scatter (points); logged to wandb too."""
        samples = self.sample(self.fixed_latents)
        if samples.dim() == 4:
            save_image_grid(samples, path)
        else:
            points = self.sample(torch.randn(1000, self.hparams.latent_dim, generator=torch.Generator().manual_seed(0)))
            datamodule = self.trainer.datamodule
            save_points(points, path, getattr(datamodule, "modes", None), getattr(datamodule, "std", None),
                        f"epoch {self.current_epoch}")
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=self.global_step)
        return path
