"""The shared base of the in-memory image data modules: fixed splits, loaders, shapes."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset, default_collate

from datamodules.batch_transforms import random_shift
from datamodules.samplers import EpochShuffleSampler


class DataError(RuntimeError):
    """Data that is missing, truncated or malformed; the message names the file and the fix."""


class InMemoryDataset(TensorDataset):
    """A ``TensorDataset`` that hands out a whole batch with one indexing operation per tensor.

    The ``DataLoader`` calls ``__getitems__`` with a batch's indices when a dataset defines it. On
    a batch of 2048 Fashion-MNIST images, one gather replaces 2048 ``__getitem__`` calls and
    ``default_collate``'s stacking of 4096 small tensors, which took as long as the model's own
    forward and backward pass. Use it with ``collate_fn=collate_stacked``.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor[index] for tensor in self.tensors)


def collate_stacked(batch):
    """Collate function: a batch :class:`InMemoryDataset` already stacked (a tuple) passes through; a
    list of samples (any other dataset, e.g. one wrapping it) is collated by ``default_collate``."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


class SeededLoaders:
    """Train/val/test loaders of ``train_set``, ``val_set``, ``test_set`` whose order depends only on
    (``seed``, epoch); the datasets may hand out stacked batches (``__getitems__``) or single samples.
    Needs ``batch_size``, ``num_workers`` and ``seed`` attributes."""

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(dataset, seed=self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_stacked,
            # Without a generator of its own, building an iterator draws a seed from torch's global
            # generator. Persistent workers build one per process, so a resumed process would draw at
            # its first validation where the uninterrupted one did not, and train with other dropout
            # masks and shifts from there on.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class ArrayDataModule(SeededLoaders, LightningDataModule):
    """Images held in memory as float tensors in [0, 1], shape (N, C, H, W), with int labels.

    Subclasses set ``input_shape``, ``num_classes`` and ``class_names`` and implement
    :meth:`load_arrays`. The validation split is carved from the training split by a permutation
    fixed by ``seed``, so every rank and every resumed run sees the same split.

    Args:
        batch_size: samples per batch on each device.
        num_workers: DataLoader worker processes (0 loads in the main process).
        val_fraction: share of the training split held out for validation.
        seed: fixes the validation split and the shuffling order.
        shift: translate every training image by a random 0..``shift`` pixels in each direction
            (zero fill), a fresh draw each time it is seen; validation and test images stay put.
    """

    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    class_names: tuple[str, ...] = ()

    def __init__(
        self, batch_size: int = 128, num_workers: int = 0, val_fraction: float = 0.1, seed: int = 0, shift: int = 0
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {shift}")
        self.shift = shift
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    @property
    def name(self) -> str:
        return type(self).__name__.removesuffix("DataModule").lower()

    def load_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(x_train, y_train, x_test, y_test)``: images (N, C, H, W) float in [0, 1], labels (N,) int64."""
        raise NotImplementedError

    def stored_shape(self) -> tuple[int, ...]:
        """Shape of one image as :meth:`load_arrays` returns it; differs from ``input_shape`` when
        a batch transform (e.g. cropping) changes the size."""
        return tuple(self.input_shape)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x_train, y_train, x_test, y_test = self.load_arrays()
        expected = self.stored_shape()
        for split, x in (("train", x_train), ("test", x_test)):
            if tuple(x.shape[1:]) != expected:
                raise DataError(f"{self.name} {split} images have shape {tuple(x.shape[1:])}, expected {expected}")
        permutation = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(self.seed))
        n_val = max(1, round(self.val_fraction * len(x_train)))
        val_idx, train_idx = permutation[:n_val], permutation[n_val:]
        self.train_set = InMemoryDataset(x_train[train_idx], y_train[train_idx])
        self.val_set = InMemoryDataset(x_train[val_idx], y_train[val_idx])
        self.test_set = InMemoryDataset(x_test, y_test)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Random shifts of training batches (``shift`` > 0), on the device the batch is on."""
        trainer = self.trainer
        if not self.shift or trainer is None or not trainer.training:
            return batch
        images, *rest = batch
        return (random_shift(images, self.shift), *rest)
