"""Dynamic routing (Sabour; Su) and squash against loop-by-loop references written from the equations."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lit_modules.components.capsules.dynamic_routing import sabour_routing, su_routing
from lit_modules.components.capsules.squash import squash

EPS = 1e-7


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum() + EPS)


def reference_sabour(votes: torch.Tensor, iterations: int):
    """b_ij = 0; c_i = softmax_j(b_i); s_j = sum_i c_ij u_j|i; v_j = squash(s_j); b_ij += <u_j|i, v_j>."""
    batch, n_in, n_out, dim = votes.shape
    v_all = torch.zeros(batch, n_out, dim, dtype=votes.dtype)
    c_all = torch.zeros(batch, n_in, n_out, dtype=votes.dtype)
    for b in range(batch):
        logits = [[0.0] * n_out for _ in range(n_in)]
        for _ in range(iterations):
            c = [[0.0] * n_out for _ in range(n_in)]
            for i in range(n_in):
                z = sum(math.exp(logits[i][k]) for k in range(n_out))
                for j in range(n_out):
                    c[i][j] = math.exp(logits[i][j]) / z
            v = []
            for j in range(n_out):
                s = sum(c[i][j] * votes[b, i, j] for i in range(n_in))
                squared = float((s * s).sum())
                v.append(squared / (1.0 + squared) * s / _norm(s))
            for i in range(n_in):
                for j in range(n_out):
                    logits[i][j] += float((votes[b, i, j] * v[j]).sum())
        v_all[b] = torch.stack(v)
        c_all[b] = torch.tensor(c, dtype=votes.dtype)
    return v_all, c_all


def reference_su(votes: torch.Tensor, iterations: int):
    """b_ij = 0; c = softmax_j(b); o_j = sum_i c_ij u_j|i; not last: o_j /= |o_j|, b_ij = <u_j|i, o_j>."""
    batch, n_in, n_out, dim = votes.shape
    v_all = torch.zeros(batch, n_out, dim, dtype=votes.dtype)
    c_all = torch.zeros(batch, n_in, n_out, dtype=votes.dtype)
    for b in range(batch):
        logits = [[0.0] * n_out for _ in range(n_in)]
        for r in range(iterations):
            c = [[0.0] * n_out for _ in range(n_in)]
            for i in range(n_in):
                z = sum(math.exp(logits[i][k]) for k in range(n_out))
                for j in range(n_out):
                    c[i][j] = math.exp(logits[i][j]) / z
            o = [sum(c[i][j] * votes[b, i, j] for i in range(n_in)) for j in range(n_out)]
            if r < iterations - 1:
                o = [oj / _norm(oj) for oj in o]
                for i in range(n_in):
                    for j in range(n_out):
                        logits[i][j] = float((votes[b, i, j] * o[j]).sum())
        out = []
        for oj in o:
            squared = float((oj * oj).sum())
            out.append(squared / (0.5 + squared) * oj / _norm(oj))
        v_all[b] = torch.stack(out)
        c_all[b] = torch.tensor(c, dtype=votes.dtype)
    return v_all, c_all


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize(
    "routing, reference", [(sabour_routing, reference_sabour), (su_routing, reference_su)], ids=["sabour", "su"]
)
def test_routing_matches_loop_reference(routing, reference, iterations):
    torch.manual_seed(iterations)
    votes = torch.randn(2, 7, 4, 5, dtype=torch.float64) * 0.7
    v, c = routing(votes, iterations)
    v_ref, c_ref = reference(votes, iterations)
    assert v.shape == (2, 4, 5) and c.shape == (2, 7, 4)
    torch.testing.assert_close(v, v_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("routing", [sabour_routing, su_routing])
def test_coupling_sums_to_one_over_parents(routing):
    votes = torch.randn(3, 11, 5, 8)
    _, c = routing(votes, 3)
    torch.testing.assert_close(c.sum(dim=2), torch.ones(3, 11))
    # Not over the children: with 11 children and 5 parents those sums are not all one.
    assert not torch.allclose(c.sum(dim=1), torch.ones(3, 5))


@pytest.mark.parametrize("routing", [sabour_routing, su_routing])
def test_agreeing_parent_gets_the_child(routing):
    """A child whose vote for parent 0 matches the other children's votes is routed there."""
    votes = torch.randn(1, 9, 3, 6) * 0.1
    votes[:, :, 0] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    _, c = routing(votes, 3)
    assert (c[0, :, 0] > c[0, :, 1]).all() and (c[0, :, 0] > c[0, :, 2]).all()


class _SoftmaxShapes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._softmax.default, torch.ops.aten.softmax.int):
            self.calls.append((tuple(args[0].shape), args[1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("routing", [sabour_routing, su_routing])
def test_logits_are_per_pair_and_softmax_runs_over_parents(routing):
    batch, n_in, n_out, dim = 2, 13, 5, 16
    with _SoftmaxShapes() as mode:
        routing(torch.randn(batch, n_in, n_out, dim), 3)
    assert mode.calls, "routing did not call softmax"
    for shape, softmax_dim in mode.calls:
        assert math.prod(shape) == batch * n_in * n_out, f"logits of shape {shape} are not one per pair"
        assert shape[softmax_dim] == n_out, "softmax must run over the parent capsules"


@pytest.mark.parametrize("routing", [sabour_routing, su_routing])
@pytest.mark.parametrize("iterations", [1, 3, 5])
def test_finite_outputs_and_gradients_for_degenerate_votes(routing, iterations):
    for votes in (torch.zeros(2, 6, 3, 4), torch.ones(2, 6, 3, 4)):
        votes = votes.clone().requires_grad_()
        v, c = routing(votes, iterations)
        (v.sum() + c.sum()).backward()
        assert torch.isfinite(v).all() and torch.isfinite(votes.grad).all()


def test_routing_gradcheck():
    votes = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: sabour_routing(x, 3), (votes,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x: su_routing(x, 3), (votes,), fast_mode=True)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch, n_in, n_out"):
        sabour_routing(torch.randn(2, 3, 4), 3)
    with pytest.raises(ValueError, match="at least one iteration"):
        su_routing(torch.randn(2, 3, 4, 5), 0)


def test_squash_lengths_and_variants():
    s = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.3, 0.4]])
    out = squash(s)
    lengths = out.norm(dim=-1)
    torch.testing.assert_close(lengths[0], torch.tensor(25.0 / 26.0), atol=1e-6, rtol=0)
    assert lengths[1] == 0
    torch.testing.assert_close(lengths[2], torch.tensor(0.25 / 1.25), atol=1e-6, rtol=0)
    torch.testing.assert_close(squash(s, k=0.5).norm(dim=-1)[2], torch.tensor(0.25 / 0.75), atol=1e-6, rtol=0)
    # Direction is kept.
    torch.testing.assert_close(out[0] / lengths[0], torch.tensor([0.6, 0.8]))
    zero = torch.zeros(3, requires_grad=True)
    squash(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()
