"""The run's ModelCheckpoint: ``best-*.ckpt`` by the monitored metric, and a ``last.ckpt`` that is always the latest.

Since Lightning 2.6 (Lightning-AI/pytorch-lightning#21244, fixing #20245 there), ``save_last=True``
means "a copy of every checkpoint saved", as documented: ``last.ckpt`` is written only at a step
where a top-k checkpoint was saved too, so with ``save_top_k=1`` only when the monitored metric
improved. ``last.ckpt`` is what ``--resume auto``, SIGKILL recovery and SLURM requeues continue
from, so a stale one would silently throw away every epoch since the last improvement.
:class:`RunCheckpoint` writes it at every point where Lightning would have considered saving (the
end of each epoch, after validation when there is validation) unless a checkpoint was already
written at that step.

A second, public ``ModelCheckpoint(monitor=None, filename="last")`` would also rewrite a file
every epoch, but the suite finds "the" checkpoint callback as ``trainer.checkpoint_callback`` (the
first one): the preemption handler saves its mid-epoch ``last.ckpt`` through it and the loss guard
names its files, and the ``checkpoint.save_last`` option would then have to steer a second
callback. One callback keeps ``last.ckpt`` and ``best-*.ckpt`` in one state.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed at every epoch end, improved or not.

    Takes exactly ``ModelCheckpoint``'s arguments (the ``checkpoint`` section of the config).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer) -> None:
        # skipped when the parent saved at this step already (it then wrote last.ckpt as well)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
