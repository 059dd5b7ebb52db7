"""DDP that wraps a model's sub-networks separately instead of the whole LightningModule.

A GAN trains two networks with two optimisers, each step touching one of them. Lightning's
``DDPStrategy`` wraps the whole LightningModule in one ``DistributedDataParallel``, whose reducer
expects a gradient for every parameter after every backward: the generator step leaves the
critic without one and DDP fails with "parameters that were not used in producing the loss"
(Lightning issues #20328, #20685, #19238; Lightning's own GAN example does this). The usual way
out, ``ddp_find_unused_parameters_true``, traverses the autograd graph after every forward to find
the unused parameters, and still all-reduces gradients of the network that was not trained.

As in plain PyTorch GAN code (and Lightning PR #20936), :class:`SubmoduleDDPStrategy` gives each
sub-network its own ``DistributedDataParallel``: a model lists them in ``ddp_submodules`` and
receives the wrappers in its ``ddp_wrappers`` dict, calling a wrapper where that network's own
weights are being trained and the plain module elsewhere. Each backward then reduces exactly the
parameters it produced gradients for; no graph traversal, no extra all-reduce. The wrappers live
outside the module tree, so the state dict, checkpoints and ``evaluate.py`` see the plain networks.
Everything else (process group, timeout, sampler, checkpointing) is Lightning's ``DDPStrategy``,
which is also what a model without ``ddp_submodules`` gets from this class.

Select it in a model's registry YAML::

    trainer:
      strategy:
        class_path: litsuite.submodule_ddp.SubmoduleDDPStrategy

On one device no wrapper is made and the model runs its plain networks.
"""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel


class SubmoduleDDPStrategy(DDPStrategy):
    """``DDPStrategy`` that wraps each of the model's ``ddp_submodules`` in its own ``DistributedDataParallel``.

    Takes ``DDPStrategy``'s arguments; its DDP keyword arguments (and a model's ``ddp_options``)
    apply to every wrapper.
    """

    def configure_ddp(self) -> None:
        module = self.lightning_module
        names = tuple(getattr(module, "ddp_submodules", ()) or ())
        if not names:
            super().configure_ddp()
            return
        if self.world_size == 1:
            return  # nothing to reduce: the model runs its plain networks
        # the parts outside the wrapped networks (moving averages, fixed latents) start equal on every rank too
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
        device_ids = self.determine_ddp_device_ids()
        module.ddp_wrappers = wrap_submodules(module, names, device_ids=device_ids, **self._ddp_kwargs)

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and getattr(module, "ddp_wrappers", None):
            module.ddp_wrappers = {}
        super().teardown()


def wrap_submodules(module, names: tuple[str, ...], **ddp_kwargs) -> dict[str, DistributedDataParallel]:
    """``{name: DistributedDataParallel(module.<name>)}``: one reducer per sub-network (process group initialised)."""
    return {name: DistributedDataParallel(getattr(module, name), **ddp_kwargs) for name in names}
