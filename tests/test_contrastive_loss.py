"""FlatNCE and InfoNCE against a loop written from the equations; precision, batch sizes, DDP gathering."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils._python_dispatch import TorchDispatchMode

from losses.contrastive import flatnce, infonce


def views(n: int, d: int = 16, seed: int = 0, dtype=torch.float64, noise: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()


def reference_terms(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per anchor, (positive score, list of negative scores), one cosine at a time, from the equation."""
    rows = [*z1, *z2]
    n = len(z1)
    cos = lambda a, b: (a @ b) / (a.norm() * b.norm())
    terms = []
    for i, anchor in enumerate(rows):
        t = (i + n) % (2 * n)
        positive = cos(anchor, rows[t]) / tau
        negatives = torch.stack([cos(anchor, rows[j]) / tau for j in range(2 * n) if j not in (i, t)])
        terms.append((positive, negatives))
    return terms


def reference_flat_objective(z1, z2, tau):
    """Mean over anchors of logsumexp(negatives − positive): the function whose gradient FlatNCE has."""
    terms = reference_terms(z1, z2, tau)
    return sum(torch.logsumexp(neg - pos, dim=0) for pos, neg in terms) / len(terms)


def reference_infonce(z1, z2, tau):
    """Mean over anchors of −log(e^{s_pos} / (e^{s_pos} + Σ e^{s_neg}))."""
    terms = reference_terms(z1, z2, tau)
    return sum(-pos + torch.logsumexp(torch.cat([pos.view(1), neg]), dim=0) for pos, neg in terms) / len(terms)


def gradients(loss, tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("n", [4, 7])
def test_flatnce_gradient_is_that_of_logsumexp_of_negatives_minus_positive(n):
    z1, z2 = views(n)
    loss, _ = flatnce(z1, z2, temperature=0.1)
    assert loss.dtype == torch.float64 and loss.item() == pytest.approx(1.0, abs=1e-12)  # ξ / sg(ξ)
    expected = gradients(reference_flat_objective(z1, z2, 0.1), (z1, z2))
    for got, want in zip(gradients(loss, (z1, z2)), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert want.abs().max() > 1e-2  # a gradient worth comparing


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_logged_value_and_infonce_equal_the_cross_entropy_for_any_batch_size(n):
    z1, z2 = views(n, seed=n)
    _, logged = flatnce(z1, z2, temperature=0.2)
    loss = infonce(z1, z2, temperature=0.2)
    if n == 1:  # one pair: nothing to contrast with, a zero loss that still has a (zero) gradient
        assert loss.item() == 0.0 and logged.item() == 0.0
        assert all(torch.equal(g, torch.zeros_like(g)) for g in gradients(loss, (z1, z2)))
        return
    want = reference_infonce(z1, z2, 0.2)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logged, want.detach(), rtol=1e-12, atol=1e-12)
    assert not logged.requires_grad
    for got, ref in zip(gradients(loss, (z1, z2)), gradients(want, (z1, z2))):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_finite_at_low_temperature_with_half_precision_inputs(dtype):
    z1, z2 = views(32, d=128, dtype=dtype, noise=0.05)
    for loss in (flatnce(z1, z2, temperature=0.01)[0], flatnce(z1, z2, temperature=0.01)[1], infonce(z1, z2, 0.01)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    for loss in (flatnce(z1, z2, temperature=0.01)[0], infonce(z1, z2, 0.01)):
        assert all(torch.isfinite(g).all() for g in gradients(loss, (z1, z2)))
    # Scores are taken in float32 from the rounded inputs: the same value as float32 inputs of those numbers.
    exact = infonce(z1.detach().float(), z2.detach().float(), 0.01)
    torch.testing.assert_close(infonce(z1, z2, 0.01).detach(), exact, rtol=1e-5, atol=1e-5)


def test_scores_stay_float32_under_autocast():
    layer = torch.nn.Linear(16, 8)
    x1, x2 = torch.randn(6, 16), torch.randn(6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = layer(x1), layer(x2)
        assert z1.dtype == torch.bfloat16
        loss, logged = flatnce(z1, z2, temperature=0.01)
        plain = infonce(z1, z2, temperature=0.01)
    assert loss.dtype == logged.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(plain, infonce(z1.float(), z2.float(), 0.01))  # no bf16 matmul inside


def test_flatnce_keeps_a_gradient_where_infonce_vanishes():
    """Nearly identical views at τ = 0.05: ξ ≈ 1e-7, InfoNCE's gradient ξ/(1+ξ)·∇log ξ goes with it."""
    z1, z2 = views(8, d=128, noise=1e-3, dtype=torch.float32)
    info_grad = torch.cat([g.flatten() for g in gradients(infonce(z1, z2, 0.05), (z1, z2))])
    flat_grad = torch.cat([g.flatten() for g in gradients(flatnce(z1, z2, 0.05)[0], (z1, z2))])
    assert info_grad.norm() < 1e-5
    assert flat_grad.norm() >= 1e-3


class ShapeRecorder(TorchDispatchMode):
    """Records the number of elements of every tensor an operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_tensor_of_pairs_times_features_is_built():
    """An (N, N, D) cosine broadcast would be 64× the (2N, 2N) score matrix here; nothing may exceed the latter."""
    n, d = 32, 64
    z1, z2 = views(n, d=d, dtype=torch.float32)
    recorder = ShapeRecorder()
    with recorder:
        loss, _ = flatnce(z1, z2, 0.1)
        loss.backward()
    assert recorder.largest <= max((2 * n) ** 2, 2 * n * d)


# --------------------------------------------------------------------------- 2 processes, gloo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Encoder(torch.nn.Module):
    """A linear encoder with the loss inside forward, so DDP's reducer sees the whole computation."""

    def __init__(self, loss: str, gather: bool):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(12, 6, dtype=torch.float64)
        self.loss, self.gather = loss, gather

    def forward(self, x1, x2):
        z1, z2 = self.net(x1), self.net(x2)
        if self.loss == "flatnce":
            loss, logged = flatnce(z1, z2, 0.1, gather=self.gather)
            return loss, logged
        loss = infonce(z1, z2, 0.1, gather=self.gather)
        return loss, loss.detach()


CASES = [(loss, gather) for loss in ("flatnce", "infonce") for gather in (True, False)]


def _rank(rank, world, port, split, x1, x2, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        start = sum(split[:rank])
        part = slice(start, start + split[rank])
        for loss, gather in CASES:  # one process group for every case: spawning is the slow part
            ddp = torch.nn.parallel.DistributedDataParallel(Encoder(loss, gather))
            value, logged = ddp(x1[part], x2[part])
            value.backward()
            logged = logged.clone()
            dist.all_reduce(logged)  # as sync_dist logging: the mean over processes
            if rank == 0:
                grads = {name: p.grad.clone() for name, p in ddp.module.named_parameters()}
                out[loss, gather] = {"logged": logged / world, **grads}
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("split", [(5, 5), (6, 3)], ids=["equal", "partial-last-batch"])
def test_two_process_gradients_equal_one_process_on_the_global_batch(split):
    g = torch.Generator().manual_seed(3)
    n = sum(split)
    x1 = torch.randn(n, 12, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(n, 12, generator=g, dtype=torch.float64)
    out = mp.Manager().dict()
    mp.spawn(_rank, args=(2, free_port(), split, x1, x2, out), nprocs=2, join=True)
    for loss in ("flatnce", "infonce"):
        single = Encoder(loss, gather=True)
        value, logged = single(x1, x2)
        value.backward()
        want = {name: p.grad for name, p in single.named_parameters()}
        gathered, local = out[loss, True], out[loss, False]
        torch.testing.assert_close(gathered["logged"], logged.detach(), rtol=1e-10, atol=1e-12)
        for name, grad in want.items():
            torch.testing.assert_close(gathered[name], grad, rtol=1e-9, atol=1e-12)
        # each process contrasting only its own rows is another loss: the test can tell
        assert not math.isclose(local["logged"].item(), logged.item(), rel_tol=1e-3)
        assert not torch.allclose(local["net.weight"], want["net.weight"], rtol=1e-3, atol=1e-6)
