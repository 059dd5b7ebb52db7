"""A train loader that can continue an epoch part-way through, for checkpoints taken mid-epoch.

:class:`ResumableDataLoader` counts the batches it has handed out in the current epoch and can
leave that many out of the next epoch. :func:`make_train_loader_resumable` puts it behind the
``train_dataloader`` Lightning calls, so data modules stay plain. The count travels in the
checkpoint through :class:`litsuite.requeue.PreemptionHandler`.
"""

from __future__ import annotations

import itertools
import os

import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, IterableDataset


class _SkipFirst:
    """A batch sampler without the first ``skip`` batches of another (indices only: no data is loaded)."""

    def __init__(self, batches, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.skip)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose state is the number of batches handed out in the current epoch.

    After :meth:`load_state_dict` the next epoch starts after that many batches. The skip acts on
    the batch sampler's indices when the iterator is built, at the first batch, after Lightning has
    set the sampler's epoch: the order is the interrupted epoch's order.
    """

    _done_in_epoch = 0  # batches handed out since this epoch began, skipped ones included
    _resume_at = 0  # batches the next epoch leaves out (from a checkpoint)
    _skip_first: _SkipFirst | None = None  # the shortened sampler of the epoch being resumed
    _building = False  # set while the next iterator is being built: _index_sampler hands out _skip_first

    @property
    def _index_sampler(self):
        if self._building and self._skip_first is not None:
            return self._skip_first
        return super()._index_sampler

    def __iter__(self):
        skip, self._resume_at = self._resume_at, 0
        if self._skip_first is not None:
            # With persistent workers torch keeps one iterator, and with it this sampler, for every later
            # epoch: only the resumed epoch may be short.
            self._skip_first.skip = 0
        self._skip_first = _SkipFirst(super()._index_sampler, skip) if skip else None
        self._done_in_epoch = skip
        self._building = True
        try:
            iterator = super().__iter__()
        finally:
            self._building = False
        for batch in iterator:
            self._done_in_epoch += 1
            yield batch

    def state_dict(self) -> dict:
        return {"batches_done": self._done_in_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        done = int(state_dict.get("batches_done", 0))
        self._resume_at = done if 0 < done < len(self) else 0


def resumable(loader):
    """The same loader as a :class:`ResumableDataLoader` (iterable-style data sets are returned as they are).

    The copy draws its workers' base seed from a generator of its own instead of torch's global
    one, so building an iterator (which a resumed run does once more) leaves the global random
    stream, and with it dropout and noise, where the checkpoint left it.
    """
    plain = isinstance(loader, DataLoader) and not isinstance(loader, ResumableDataLoader)
    if not plain or isinstance(loader.dataset, IterableDataset):
        return loader
    seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
    kwargs = dict(
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator or torch.Generator().manual_seed(seed),
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
    )
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    if loader.batch_size is None:  # a custom batch sampler
        kwargs["batch_sampler"] = loader.batch_sampler
    else:
        kwargs.update(batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last)
    return ResumableDataLoader(loader.dataset, **kwargs)


def make_train_loader_resumable(trainer, pl_module) -> None:
    """Wrap the ``train_dataloader`` Lightning will call (data module's, else model's) with :func:`resumable`.

    Wrapping the bound method keeps every data module plain; Lightning calls it inside the context
    that records loader arguments, so under DDP it can still rebuild the loader with its sampler.
    """
    if trainer.datamodule is not None and is_overridden("train_dataloader", trainer.datamodule):
        source = trainer.datamodule
    elif is_overridden("train_dataloader", pl_module):
        source = pl_module
    else:
        return
    original = source.train_dataloader
    if getattr(original, "_resumable", False):
        return

    def train_dataloader():
        return resumable(original())

    train_dataloader._resumable = True
    source.train_dataloader = train_dataloader
