"""EM routing against a loop-by-loop reference written from Procedure 1 of Hinton et al. (2018)."""

from __future__ import annotations

import math

import pytest
import torch

from lit_modules.components.capsules.em_routing import DEFAULT_LAMBDA_SCALE, em_routing, inverse_temperature_schedule
from lit_modules.components.capsules.gaussian_ops import RoutingWorkspace, gaussian_fit

EPS = 1e-6


def reference_em(votes, a_in, beta_u, beta_a, iterations, lambda_scale, child_index=None):
    """Loops over samples, parents and children; vectors only over the 16 pose components.

    votes (B, P, N, J, H), a_in (B, P, N); ``child_index[p][n]`` names the child in slot n of
    position p (slots with the same name are one child); None means every slot is its own child.
    """
    batch, positions, slots, parents, _ = votes.shape
    mu_out = torch.zeros(batch, positions, parents, votes.shape[-1], dtype=votes.dtype)
    a_out = torch.zeros(batch, positions, parents, dtype=votes.dtype)
    r_out = torch.zeros(batch, positions, slots, parents, dtype=votes.dtype)
    lambdas = [lambda_scale * (1 - 0.95 ** (i + 1)) for i in range(iterations)]
    for b in range(batch):
        groups: dict = {}
        for p in range(positions):
            for n in range(slots):
                child = (p, n) if child_index is None else int(child_index[p][n])
                groups.setdefault(child, []).append((p, n))
        R = {}
        for members in groups.values():
            for p, n in members:
                for j in range(parents):
                    R[p, n, j] = 1.0 / (parents * len(members))
        for it, lam in enumerate(lambdas):
            mu, var, act = {}, {}, {}
            for p in range(positions):
                for j in range(parents):
                    weights = [R[p, n, j] * float(a_in[b, p, n]) for n in range(slots)]
                    mass = sum(weights)
                    m = sum(w * votes[b, p, n, j] for n, w in enumerate(weights)) / (mass + EPS)
                    s = sum(w * (votes[b, p, n, j] - m) ** 2 for n, w in enumerate(weights)) / (mass + EPS) + EPS
                    cost = (float(beta_u[j]) + 0.5 * torch.log(s)) * mass / slots
                    act[p, j] = 1.0 / (1.0 + math.exp(-lam * (float(beta_a[j]) - float(cost.sum()))))
                    mu[p, j], var[p, j] = m, s
            if it == iterations - 1:
                break
            for members in groups.values():
                log_terms = {}
                for p, n in members:
                    for j in range(parents):
                        d = votes[b, p, n, j] - mu[p, j]
                        log_p = float((-(d**2) / (2 * var[p, j]) - 0.5 * torch.log(2 * math.pi * var[p, j])).sum())
                        log_terms[p, n, j] = math.log(act[p, j]) + log_p
                top = max(log_terms.values())
                total = sum(math.exp(v - top) for v in log_terms.values())
                for key, value in log_terms.items():
                    R[key] = math.exp(value - top) / total
        for p in range(positions):
            for j in range(parents):
                mu_out[b, p, j], a_out[b, p, j] = mu[p, j], act[p, j]
                for n in range(slots):
                    r_out[b, p, n, j] = R[p, n, j]
    return mu_out, a_out, r_out


def loop_child_index(height, width, channels, kernel, stride):
    out_h, out_w = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    rows = []
    for oy in range(out_h):
        for ox in range(out_w):
            rows.append(
                [
                    ((oy * stride + ky) * width + ox * stride + kx) * channels + c
                    for ky in range(kernel)
                    for kx in range(kernel)
                    for c in range(channels)
                ]
            )
    return torch.tensor(rows)


def _conv_problem(seed, stride=1, batch=2, size=5, channels=2, kernel=3, parents=3):
    gen = torch.Generator().manual_seed(seed)
    index = loop_child_index(size, size, channels, kernel, stride)
    positions, slots = index.shape
    votes = torch.randn(batch, positions, slots, parents, 16, generator=gen, dtype=torch.float64)
    child_activation = torch.rand(batch, size * size * channels, generator=gen, dtype=torch.float64)
    return votes, child_activation[:, index], index


def _betas(parents, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(parents, generator=gen, dtype=torch.float64) for _ in range(2))


@pytest.mark.parametrize("iterations", [1, 3])
def test_dense_matches_reference(iterations):
    torch.manual_seed(0)
    votes = torch.randn(2, 9, 4, 16, dtype=torch.float64)
    a_in = torch.rand(2, 9, dtype=torch.float64)
    beta_u, beta_a = _betas(4)
    mu, a_out, r = em_routing(votes, a_in, beta_u, beta_a, iterations, lambda_scale=1.0, eps=EPS)
    mu_ref, a_ref, r_ref = reference_em(votes.unsqueeze(1), a_in.unsqueeze(1), beta_u, beta_a, iterations, 1.0)
    assert mu.shape == (2, 4, 16) and a_out.shape == (2, 4) and r.shape == (2, 9, 4)
    torch.testing.assert_close(mu, mu_ref[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a_out, a_ref[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(r, r_ref[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("iterations", [1, 3])
def test_convolutional_overlap_matches_reference(iterations, stride):
    votes, a_in, index = _conv_problem(iterations + 10 * stride, stride=stride)
    beta_u, beta_a = _betas(3, seed=1)
    mu, a_out, r = em_routing(votes, a_in, beta_u, beta_a, iterations, lambda_scale=1.0, eps=EPS, child_index=index)
    mu_ref, a_ref, r_ref = reference_em(votes, a_in, beta_u, beta_a, iterations, 1.0, child_index=index)
    torch.testing.assert_close(mu, mu_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(a_out, a_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(r, r_ref, atol=1e-5, rtol=0)


def test_assignments_sum_to_one_over_all_parents_of_a_child():
    votes, a_in, index = _conv_problem(3)
    _, _, r = em_routing(votes, a_in, 0.0, 0.0, 3, lambda_scale=1.0, child_index=index)
    per_slot = r.sum(dim=-1)  # (B, P, N)
    per_child = torch.zeros(votes.shape[0], int(index.max()) + 1, dtype=r.dtype)
    per_child.index_add_(1, index.reshape(-1), per_slot.reshape(votes.shape[0], -1))
    torch.testing.assert_close(per_child, torch.ones_like(per_child))
    # Patches really compete: a child in several patches gives each less than one.
    assert (per_slot < 1 - 1e-6).any()
    # Dense case: one per child.
    _, _, r = em_routing(torch.randn(2, 7, 5, 16), torch.rand(2, 7), 0.0, 0.0, 3)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 7))


def test_overlapping_patches_differ_from_independent_patches():
    votes, a_in, index = _conv_problem(4)
    shared = em_routing(votes, a_in, 0.0, 0.0, 3, lambda_scale=1.0, child_index=index)
    independent = em_routing(votes, a_in, 0.0, 0.0, 3, lambda_scale=1.0)
    assert not torch.allclose(shared[0], independent[0])


@pytest.mark.parametrize("conv", [False, True])
def test_input_activations_are_not_cancelled(conv):
    if conv:
        votes, a_in, index = _conv_problem(5)
    else:
        votes, a_in, index = (
            torch.randn(2, 1, 12, 4, 16, dtype=torch.float64),
            torch.rand(2, 1, 12, dtype=torch.float64),
            None,
        )
    mu, a_out, _ = em_routing(votes, a_in, 0.5, 0.5, 3, lambda_scale=1.0, child_index=index)
    # Scaling every activation alike: renormalising R * a over parents would cancel this.
    mu2, a_out2, _ = em_routing(votes, 0.3 * a_in, 0.5, 0.5, 3, lambda_scale=1.0, child_index=index)
    assert (a_out - a_out2).abs().max() > 1e-3
    # Silencing some children moves the poses.
    quiet = a_in.clone()
    quiet[..., ::2] = 0.0
    mu3, _, _ = em_routing(votes, quiet, 0.5, 0.5, 3, lambda_scale=1.0, child_index=index)
    assert (mu - mu3).abs().max() > 1e-3


@pytest.mark.parametrize("iterations", [1, 2, 3, 4, 5])
def test_finite_for_identical_votes_and_silent_children(iterations):
    votes = torch.ones(2, 4, 10, 3, 16).mul_(0.37).requires_grad_()
    a_in = torch.rand(2, 4, 10)
    a_in[:, 0] = 0.0  # one position whose children are all inactive
    a_in.requires_grad_()
    beta_u = torch.zeros(3, requires_grad=True)
    beta_a = torch.zeros(3, requires_grad=True)
    index = torch.arange(40).view(4, 10) % 23  # children shared across positions
    mu, a_out, r = em_routing(votes, a_in, beta_u, beta_a, iterations, child_index=index)
    (mu.sum() + a_out.sum() + r.sum()).backward()
    for t in (mu, a_out, r, votes.grad, a_in.grad, beta_u.grad, beta_a.grad):
        assert torch.isfinite(t).all()


def test_finite_for_far_apart_votes_with_large_inverse_temperature():
    votes = torch.randn(2, 3, 12, 4, 16) * 1e3
    votes[:, :, :6] = 0.0  # a tight cluster next to far-away votes: extreme log-likelihoods
    votes.requires_grad_()
    index = torch.arange(36).view(3, 12) % 20
    mu, a_out, r = em_routing(votes, torch.rand(2, 3, 12), 1.0, 1.0, 5, lambda_scale=100.0, child_index=index)
    (mu.sum() + a_out.sum()).backward()
    assert torch.isfinite(mu).all() and torch.isfinite(r).all() and torch.isfinite(votes.grad).all()


@pytest.mark.parametrize("iterations", [1, 3])
def test_gradcheck_with_shared_children(iterations):
    votes, a_in, index = _conv_problem(6, batch=1, size=4, channels=1, parents=2)
    votes = votes[..., :3].clone().requires_grad_()
    a_in = a_in.clone().requires_grad_()
    beta_u, beta_a = (t.requires_grad_() for t in _betas(2, seed=2))

    def run(v, a, bu, ba):
        return em_routing(v, a, bu, ba, iterations, lambda_scale=2.0, eps=1e-3, child_index=index)

    assert torch.autograd.gradcheck(run, (votes, a_in, beta_u, beta_a), fast_mode=True)


def test_gaussian_fit_gradcheck():
    gen = torch.Generator().manual_seed(0)
    votes = torch.randn(1, 2, 3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 2, 3, 5, generator=gen, dtype=torch.float64)
    weights = (weights / weights.sum(-1, keepdim=True)).requires_grad_()
    for with_distance, outputs in ((True, 3), (False, 2)):

        def fit(v, w, with_distance=with_distance, outputs=outputs):
            return gaussian_fit(v, w, 1e-3, RoutingWorkspace(), 0, with_distance)[:outputs]

        assert torch.autograd.gradcheck(fit, (votes, weights))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_use_float32_statistics(dtype):
    votes, a_in, index = _conv_problem(7)
    low_votes, low_a = votes.to(dtype), a_in.to(dtype)
    mu, a_out, r = em_routing(low_votes, low_a, 0.2, 0.1, 3, lambda_scale=1.0, child_index=index)
    assert mu.dtype == a_out.dtype == r.dtype == dtype
    # The same (rounded) inputs in float32: the results may differ only by the final rounding.
    mu32, a32, r32 = em_routing(low_votes.float(), low_a.float(), 0.2, 0.1, 3, lambda_scale=1.0, child_index=index)
    torch.testing.assert_close(mu.float(), mu32.to(dtype).float(), atol=0, rtol=0)
    torch.testing.assert_close(a_out.float(), a32.to(dtype).float(), atol=0, rtol=0)
    torch.testing.assert_close(r.float(), r32.to(dtype).float(), atol=0, rtol=0)


def test_inverse_temperature_schedule():
    # The authors' numbers for unnormalised costs.
    authors = inverse_temperature_schedule(3, lambda_scale=0.01)
    assert authors == pytest.approx([0.01 * 0.05, 0.01 * (1 - 0.95**2), 0.01 * (1 - 0.95**3)])
    assert inverse_temperature_schedule(2, lambda_scale=2.0) == pytest.approx([0.1, 2.0 * (1 - 0.95**2)])
    assert inverse_temperature_schedule(1) == pytest.approx([DEFAULT_LAMBDA_SCALE * 0.05])
    lambdas = inverse_temperature_schedule(6)
    assert all(a < b for a, b in zip(lambdas, lambdas[1:]))


def test_default_temperature_lets_activations_respond_to_agreement():
    """Parents whose votes agree get clearly higher activations than parents whose votes scatter."""
    torch.manual_seed(0)
    votes = torch.randn(4, 72, 2, 16)
    votes[:, :, 0] = votes[:, :1, 0] + 0.01 * torch.randn(4, 72, 16)  # parent 0: tight cluster
    _, a_out, _ = em_routing(votes, torch.ones(4, 72), 0.0, 0.0, iterations=3)
    assert (a_out[:, 0] - a_out[:, 1] > 0.1).all()


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="em_routing expects"):
        em_routing(torch.randn(2, 3, 4, 16), torch.rand(2, 4), 0.0, 0.0)
    with pytest.raises(ValueError, match="at least one iteration"):
        em_routing(torch.randn(2, 3, 4, 16), torch.rand(2, 3), 0.0, 0.0, iterations=0)
