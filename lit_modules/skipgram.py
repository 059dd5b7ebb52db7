"""``skipgram``: word embeddings trained with skip-gram (Mikolov et al. 2013), negative sampling or full softmax.

Each word has an input vector u (the embedding that is kept) and an output vector v. A
(centre, context) pair scores ⟨u_c, v_o⟩; the loss is :func:`losses.negative_sampling.negative_sampling_loss`
against ``negatives`` noise words drawn from the unigram^0.75 distribution (by an alias table), or
the exact softmax over the vocabulary (:func:`losses.negative_sampling.full_softmax_loss`) for small
vocabularies. In training, the pairs of one centre token share one draw of noise words
(``share_noise``, :func:`losses.negative_sampling.shared_noise_negative_sampling_loss`); held-out
losses draw them per pair.
Without an ``embedding_dim`` the n > 8.33·ln N rule chooses it
(:func:`lit_modules.components.embedding_dimension.min_embedding_dim`).

The embeddings produce sparse gradients (only the rows a batch touches), stepped by plain SGD on the
batch's summed loss with word2vec's lr 0.025 decaying linearly (the default: the step is one index-add
per table, see BENCHMARKS.md), or by ``torch.optim.SparseAdam`` on the mean loss. Sparse
gradients are all-reduced by DDP under gloo; NCCL has no sparse all-reduce, so under NCCL the model
switches to dense gradients (and Adam) by itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

from lit_modules.components.embedding_dimension import min_embedding_dim
from losses.negative_sampling import (
    alias_sample,
    alias_table,
    full_softmax_loss,
    fused_negative_sampling_loss,
    noise_distribution,
    shared_noise_negative_sampling_loss,
)

LOSSES = ("negative_sampling", "softmax")
OPTIMIZERS = ("sgd", "adam")


class SkipGram(LightningModule):
    """Skip-gram word embeddings.

    Args:
        vocab_size: N, linked from the data module.
        embedding_dim: n; None lets the n > 8.33·ln N rule choose it.
        loss: ``negative_sampling`` or ``softmax`` (exact, for small N).
        negatives: K noise words per pair.
        optimizer: ``sgd`` (word2vec's: the batch's summed loss, learning rate decaying linearly to
            lr·1e-4) or ``adam`` (mean loss; ``SparseAdam`` on sparse gradients, else ``Adam``).
        lr: learning rate (word2vec's 0.025 for ``sgd``).
        sparse: sparse embedding gradients (dense under NCCL, which cannot all-reduce them, and with
            the full softmax, where every output vector gets a gradient).
        share_noise: in training, consecutive pairs with the same centre word (the pairs of one
            centre token, which the data module keeps together) share one draw of K noise words; each
            pair's expected loss and gradient are unchanged, and a step gathers and updates about a
            sixth of the noise rows (see BENCHMARKS.md). Held-out losses always draw per pair.
    """

    def __init__(
        self,
        vocab_size: int | None,
        embedding_dim: int | None = None,
        loss: str = "negative_sampling",
        negatives: int = 5,
        optimizer: str = "sgd",
        lr: float = 0.025,
        sparse: bool = True,
        share_noise: bool = True,
    ) -> None:
        super().__init__()
        if vocab_size is None:
            raise ValueError("skipgram trains on words: use a data set with a vocabulary (--data words)")
        if vocab_size < 2:
            raise ValueError(f"a skip-gram model needs a vocabulary of N ≥ 2 words, got {vocab_size}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got '{loss}'")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got '{optimizer}'")
        if negatives < 1:
            raise ValueError(f"negatives must be at least 1, got {negatives}")
        if embedding_dim is None:
            embedding_dim = min_embedding_dim(vocab_size)
            rank_zero_info(
                f"skipgram: embedding_dim not set; the n > 8.33·ln N rule gives {embedding_dim} for N = {vocab_size}"
            )
        elif embedding_dim < 1:
            raise ValueError(f"embedding_dim must be at least 1, got {embedding_dim}")
        self.save_hyperparameters()
        sparse = sparse and loss != "softmax"
        self.embedding_dim = embedding_dim
        self.centre = nn.Embedding(vocab_size, embedding_dim, sparse=sparse)
        self.context = nn.Embedding(vocab_size, embedding_dim, sparse=sparse)
        nn.init.uniform_(self.centre.weight, -0.5 / embedding_dim, 0.5 / embedding_dim)  # word2vec's start
        nn.init.zeros_(self.context.weight)
        self.register_buffer("noise", torch.full((vocab_size,), 1.0 / vocab_size, dtype=torch.float64))
        # the alias table of ``noise`` for sampling, with the storage and version of ``noise`` it was built from
        self._alias: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None
        self.held_out = nn.ModuleDict(
            {s: MeanMetric() for s in ("val_loss", "val_softmax", "test_loss", "test_softmax")}
        )

    def setup(self, stage: str) -> None:
        counts = getattr(self.trainer.datamodule, "word_counts", None) if self.trainer is not None else None
        if counts is not None:  # a resumed or evaluated run then loads the saved one over it
            if len(counts) != self.hparams.vocab_size:
                raise ValueError(f"the data has {len(counts)} words but the model embeds {self.hparams.vocab_size}")
            self.noise.copy_(noise_distribution(counts))
        if self.centre.sparse and dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
            rank_zero_info("skipgram: NCCL cannot all-reduce sparse gradients; using dense ones")
            self.centre.sparse = self.context.sparse = False

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        """The embeddings (input vectors) of ``words``. Shape: ``(...)`` ids → ``(..., n)``."""
        return self.centre(words)

    def pair_losses(self, pairs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The loss of each (centre, context) pair, K noise words drawn here for each. Shape: ``(B, 2)`` → ``(B,)``."""
        if self.hparams.loss == "softmax":
            return self.softmax_losses(pairs)
        return self.negative_sampling_losses(pairs, self.sample_noise(len(pairs), generator).to(pairs.device))

    def training_losses(self, pairs: torch.Tensor) -> torch.Tensor:
        """The loss of each pair that training steps on: :meth:`pair_losses`, or with ``share_noise`` one
        draw of noise words for each run of consecutive pairs with the same centre word. Shape: ``(B, 2)`` → ``(B,)``.
        """
        if self.hparams.loss == "softmax" or not self.hparams.share_noise:
            return self.pair_losses(pairs)
        return self.shared_noise_losses(pairs)

    def shared_noise_losses(self, pairs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Negative-sampling loss of each pair, one set of K noise words for each of the G runs of consecutive
        pairs with the same centre word (drawn here unless given). Shape: ``(B, 2), (G, K)`` → ``(B,)``.
        """
        centres, group = torch.unique_consecutive(pairs[:, 0], return_inverse=True)
        if noise is None:
            noise = self.sample_noise(len(centres)).to(pairs.device)
        elif len(noise) != len(centres):
            raise ValueError(f"{len(centres)} runs of equal centre words need {len(centres)} rows of noise words, "
                             f"got {len(noise)}")
        outputs = self.context(torch.cat((pairs[:, 1], noise.reshape(-1))))  # one gather: contexts, then noise words
        return shared_noise_negative_sampling_loss(self.centre(centres), outputs, group)

    def sample_noise(self, num_pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``negatives`` noise words per pair from the unigram^0.75 distribution. Shape: ``(num_pairs, K)``.

        Drawn from an alias table of ``noise`` (:func:`losses.negative_sampling.alias_table`), rebuilt
        whenever ``noise`` changes (a new vocabulary's counts, a loaded checkpoint).
        """
        key = (self.noise.data_ptr(), self.noise._version)
        if self._alias is None or self._alias[0] != key:
            self._alias = (key, *(t.to(self.noise.device) for t in alias_table(self.noise.cpu())))
        accept, alias = self._alias[1:]
        if generator is not None:  # a seeded generator lives on the CPU
            accept, alias = accept.cpu(), alias.cpu()
        return alias_sample(accept, alias, (num_pairs, self.hparams.negatives), generator)

    def negative_sampling_losses(self, pairs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Negative-sampling loss of each pair against the given noise words. Shape: ``(B, 2), (B, K)`` → ``(B,)``.

        One gather of the output table serves the context and the noise words; the loss's gradient
        is written out (:func:`losses.negative_sampling.fused_negative_sampling_loss`).
        """
        outputs = torch.cat((pairs[:, 1:], noise), dim=1)  # (B, 1 + K)
        return fused_negative_sampling_loss(self.centre(pairs[:, 0]), self.context(outputs))

    def step_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """The loss the optimiser steps on, from the pairs' losses ``(B,)``.

        SGD: the sum over the batch's pairs times the number of ranks, as word2vec steps by each pair's
        full gradient at its lr (DDP averages the ranks' gradients, so the update is the global batch's
        sum, equal to one process on the whole global batch). SparseAdam: the mean.
        """
        if self.hparams.optimizer != "sgd":
            return losses.mean()
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return losses.sum() * world

    def softmax_losses(self, pairs: torch.Tensor) -> torch.Tensor:
        """−log p(context | centre) under the model's full softmax, per pair. Shape: ``(B, 2)`` → ``(B,)``."""
        return full_softmax_loss(self.centre(pairs[:, 0]), pairs[:, 1], self.context.weight)

    def training_step(self, batch, batch_idx):
        losses = self.training_losses(batch[0])
        loss = self.step_loss(losses)
        if batch_idx % self.trainer.log_every_n_steps == 0:  # logging costs as much as a small step
            self.log("train/loss", losses.detach().mean(), prog_bar=True)
        return loss

    @torch.no_grad()
    def _held_out_step(self, pairs: torch.Tensor, batch_idx: int, stage: str) -> None:
        # fixed noise words per batch, so that held-out losses of two runs (or two models) compare
        generator = torch.Generator().manual_seed(batch_idx)
        sampled = self.pair_losses(pairs, generator) if self.hparams.loss != "softmax" else None
        softmax = self.softmax_losses(pairs)
        self.held_out[f"{stage}_loss"].update(sampled if sampled is not None else softmax)
        self.held_out[f"{stage}_softmax"].update(softmax)
        self.log(f"{stage}/loss", self.held_out[f"{stage}_loss"], prog_bar=stage == "val")
        self.log(f"{stage}/softmax_ce", self.held_out[f"{stage}_softmax"])

    def validation_step(self, batch, batch_idx):
        self._held_out_step(batch[0], batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._held_out_step(batch[0], batch_idx, "test")

    def configure_optimizers(self):
        params = [self.centre.weight, self.context.weight]
        if self.hparams.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=self.hparams.lr)
            total = self.trainer.estimated_stepping_batches
            steps = int(total) if total != float("inf") else 10**12
            decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(1e-4, 1.0 - s / max(1, steps)))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}
        if self.centre.sparse:
            return torch.optim.SparseAdam(params, lr=self.hparams.lr)
        return torch.optim.Adam(params, lr=self.hparams.lr)
