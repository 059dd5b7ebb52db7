"""Activation memory of a training step, measured operation by operation.

:func:`step_live_bytes` runs one forward and backward pass under a ``TorchDispatchMode`` that sees
every operation (those of the backward pass too) and a ``saved_tensors_hooks`` pair that sees what
autograd keeps for backward and when it lets it go; at each operation it notes the bytes live.
:func:`paired_operations` lines up two such runs at different batch sizes, so that each
operation's cost can be scaled to another batch on its own.
"""

from __future__ import annotations

import difflib
import math
import weakref

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def step_loss(model: nn.Module, batch) -> torch.Tensor:
    """The training step's loss; the plain forward pass for a model whose step needs a running Trainer."""
    try:
        out = model.training_step(batch, 0)
        if isinstance(out, dict):
            out = out["loss"]
        if isinstance(out, torch.Tensor) and out.requires_grad:
            return out
    except (RuntimeError, AttributeError, TypeError, KeyError):
        pass
    out = model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return out if isinstance(out, torch.Tensor) else torch.stack([t.sum() for t in out])


class _Saved:
    """What autograd keeps in place of a saved tensor while :class:`PeakActivations` watches: its
    release (when the graph node is freed) tells that the tensor is no longer held for backward."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class PeakActivations(TorchDispatchMode):
    """The peak bytes of a forward and backward pass beyond the parameters, op by op.

    At every operation the live memory is taken as the tensors autograd holds for the backward
    pass (seen through ``saved_tensors_hooks``, released when their graph node is freed) plus the
    operation's own inputs and outputs that are neither saved nor parameters: a transient such
    as a broadcast weight materialised for a batched matrix product, or a gradient flowing
    backwards, costs memory only while the operation that makes or uses it runs. Storages are
    counted once however many views share them. Gradients accumulated into parameters are left
    out (they are counted with the parameters).
    """

    def __init__(self, params: set[int]) -> None:
        super().__init__()
        self.params = params
        self.saved: dict[int, list[int]] = {}  # storage pointer -> [bytes, tensors saved on it]
        self.saved_bytes = 0
        self.live: list[tuple[str, int]] = []  # (operation, bytes live while it runs), in order

    def pack(self, tensor: torch.Tensor):
        if tensor.layout != torch.strided:  # sparse tensors have no single storage to count
            return tensor
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in self.params:
            return tensor
        entry = self.saved.setdefault(ptr, [tensor.untyped_storage().nbytes(), 0])
        if entry[1] == 0:
            self.saved_bytes += entry[0]
        entry[1] += 1
        holder = _Saved(tensor)
        weakref.finalize(holder, self._release, ptr)
        return holder

    @staticmethod
    def unpack(packed):
        return packed.tensor if isinstance(packed, _Saved) else packed

    def _release(self, ptr: int) -> None:
        entry = self.saved.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.saved_bytes -= entry[0]
            del self.saved[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        transient = {}
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                if t.layout != torch.strided:  # a sparse gradient: its dense parts pass through here too
                    continue
                ptr = t.untyped_storage().data_ptr()
                if ptr not in self.params and ptr not in self.saved:
                    transient[ptr] = t.untyped_storage().nbytes()
        workspace = unfold_bytes(func, args, out)
        self.live.append((str(func), self.saved_bytes + sum(transient.values()) + workspace))
        return out


_CONVOLUTIONS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)


def unfold_bytes(func, args, out) -> int:
    """Scratch memory of a CPU convolution, which no tensor shows: the input unfolded into columns.

    ``N · (C_in/groups) · kh · kw · H_out · W_out · groups`` values (im2col), allocated inside the
    forward operation and again for the backward one. A 1×1 kernel needs no unfolding.

    Shape:
        - forward ``args``: ``(input (N, C_in, H, W), weight (C_out, C_in/groups, kh, kw), ...)``
        - backward ``args``: ``(grad_output (N, C_out, H_out, W_out), input, weight, ...)``
    """
    if func not in _CONVOLUTIONS:
        return 0
    if func is torch.ops.aten.convolution.default:
        inputs, weight, result = args[0], args[1], out
    else:
        result, inputs, weight = args[0], args[1], args[2]
    if weight.dim() < 3 or all(k == 1 for k in weight.shape[2:]):
        return 0
    groups = inputs.shape[1] // weight.shape[1]
    return inputs.shape[0] * math.prod(weight.shape[1:]) * groups * math.prod(result.shape[2:]) * inputs.element_size()


def step_live_bytes(model: nn.Module, batch) -> list[tuple[str, int]]:
    """Bytes live during each operation of one training step's forward and backward pass on ``batch``,
    parameters and their gradients excluded (see :class:`PeakActivations`). Gradients land in ``model``."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    tracker = PeakActivations(params)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack), tracker:
        loss = step_loss(model, batch)
        loss.float().sum().backward()
    return tracker.live


def paired_operations(small: list[tuple[str, int]], large: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """The live bytes of the same operation in two runs, paired by the operations' sequence (a run may
    have an operation the other lacks, e.g. a squeeze that only one batch size needs)."""
    if [name for name, _ in small] == [name for name, _ in large]:
        return [(a, b) for (_, a), (_, b) in zip(small, large)]
    matcher = difflib.SequenceMatcher(None, [n for n, _ in small], [n for n, _ in large], autojunk=False)
    return [
        (small[block.a + k][1], large[block.b + k][1])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
