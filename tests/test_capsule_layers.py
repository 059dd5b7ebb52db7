"""Capsule layers: documented shapes, and votes equal to loop-built references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_modules.components.capsules.dynamic_routing import sabour_routing
from lit_modules.components.capsules.em_routing import em_routing
from lit_modules.components.capsules.layers import (
    ClassMatrixCaps,
    ConvMatrixCaps,
    DenseCapsules,
    PrimaryCaps,
    PrimaryMatrixCaps,
    conv_child_index,
    coordinate_offsets,
)
from tests.test_em_routing import loop_child_index


@pytest.mark.parametrize("size, grid", [(28, 6), (32, 8)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("routing, shared", [("sabour", False), ("su", True)])
def test_vector_capsule_shapes(size, grid, channels, routing, shared):
    conv = nn.Conv2d(channels, 16, 9)
    primary = PrimaryCaps(16, capsule_types=4, capsule_dim=8)
    in_caps = 4 * grid * grid
    dense = DenseCapsules(None if shared else in_caps, 8, 10, 16, routing=routing, shared_weights=shared)
    u = primary(torch.relu(conv(torch.randn(2, channels, size, size))))
    assert u.shape == (2, in_caps, 8)
    assert (u.norm(dim=-1) < 1).all()
    v, c = dense(u)
    assert v.shape == (2, 10, 16) and c.shape == (2, in_caps, 10)
    assert (v.norm(dim=-1) < 1).all()


def test_dense_capsule_votes():
    torch.manual_seed(0)
    u = torch.randn(3, 7, 8, dtype=torch.float64)
    per_pair = DenseCapsules(7, 8, 4, 5).double()
    v, c = per_pair(u)
    v_ref, c_ref = sabour_routing(torch.einsum("ijed,bid->bije", per_pair.weight, u), 3)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(c, c_ref)
    shared = DenseCapsules(None, 8, 4, 5, shared_weights=True, routing="su").double()
    v, _ = shared(u)
    from lit_modules.components.capsules.dynamic_routing import su_routing

    v_ref, _ = su_routing(torch.einsum("jed,bid->bije", shared.weight, u), 3)
    torch.testing.assert_close(v, v_ref)


def test_dense_capsules_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown routing"):
        DenseCapsules(10, 8, 10, 16, routing="kmeans")
    with pytest.raises(ValueError, match="in_caps"):
        DenseCapsules(None, 8, 10, 16)


@pytest.mark.parametrize("size, grids", [(28, (12, 5, 3)), (32, (14, 6, 4))])
@pytest.mark.parametrize("channels", [1, 3])
def test_matrix_capsule_shapes_and_gradients(size, grids, channels):
    conv = nn.Conv2d(channels, 8, 5, stride=2)
    primary = PrimaryMatrixCaps(8, 4)
    caps1 = ConvMatrixCaps(4, 5, kernel_size=3, stride=2, iterations=2)
    caps2 = ConvMatrixCaps(5, 6, kernel_size=3, stride=1, iterations=2)
    classes = ClassMatrixCaps(6, 10, iterations=2)
    poses, act = primary(torch.relu(conv(torch.randn(2, channels, size, size))))
    assert poses.shape == (2, grids[0], grids[0], 4, 4, 4) and act.shape == (2, grids[0], grids[0], 4)
    assert ((act > 0) & (act < 1)).all()
    poses, act = caps1(poses, act)
    assert poses.shape == (2, grids[1], grids[1], 5, 4, 4) and act.shape == (2, grids[1], grids[1], 5)
    poses, act = caps2(poses, act)
    assert poses.shape == (2, grids[2], grids[2], 6, 4, 4) and act.shape == (2, grids[2], grids[2], 6)
    poses, act = classes(poses, act)
    assert poses.shape == (2, 10, 4, 4) and act.shape == (2, 10)
    (act.sum() + poses.sum()).backward()
    for module in (conv, primary, caps1, caps2, classes):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_conv_child_index_matches_loops():
    for stride in (1, 2):
        torch.testing.assert_close(conv_child_index(7, 6, 3, 3, stride), loop_child_index(7, 6, 3, 3, stride))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_matrix_caps_equals_loop_votes(stride):
    torch.manual_seed(stride)
    layer = ConvMatrixCaps(2, 3, kernel_size=3, stride=stride, iterations=3, lambda_scale=1.0).double()
    with torch.no_grad():
        layer.beta_u.normal_()
        layer.beta_a.normal_()
    batch, size, channels = 2, 6, 2
    poses = torch.randn(batch, size, size, channels, 4, 4, dtype=torch.float64)
    act = torch.rand(batch, size, size, channels, dtype=torch.float64)
    out = (size - 3) // stride + 1
    votes = torch.zeros(batch, out * out, 9 * channels, 3, 16, dtype=torch.float64)
    a_in = torch.zeros(batch, out * out, 9 * channels, dtype=torch.float64)
    for b in range(batch):
        for oy in range(out):
            for ox in range(out):
                for ky in range(3):
                    for kx in range(3):
                        for c in range(channels):
                            n = (ky * 3 + kx) * channels + c
                            y, x = oy * stride + ky, ox * stride + kx
                            a_in[b, oy * out + ox, n] = act[b, y, x, c]
                            for j in range(3):
                                vote = poses[b, y, x, c] @ layer.weight[ky, kx, c, j]
                                votes[b, oy * out + ox, n, j] = vote.reshape(16)
    index = loop_child_index(size, size, channels, 3, stride)
    mu, a_ref, _ = em_routing(votes, a_in, layer.beta_u, layer.beta_a, 3, lambda_scale=1.0, child_index=index)
    poses_out, act_out = layer(poses, act)
    torch.testing.assert_close(poses_out, mu.view(batch, out, out, 3, 4, 4))
    torch.testing.assert_close(act_out, a_ref.view(batch, out, out, 3))


def test_class_caps_equals_loop_votes_with_coordinate_addition():
    torch.manual_seed(0)
    layer = ClassMatrixCaps(2, 4, iterations=3, lambda_scale=1.0).double()
    batch, height, width, channels = 2, 3, 4, 2
    poses = torch.randn(batch, height, width, channels, 4, 4, dtype=torch.float64)
    act = torch.rand(batch, height, width, channels, dtype=torch.float64)
    votes = torch.zeros(batch, height * width * channels, 4, 16, dtype=torch.float64)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                for c in range(channels):
                    for j in range(4):
                        vote = poses[b, y, x, c] @ layer.weight[c, j]
                        vote[0, 3] += (y + 0.5) / height
                        vote[1, 3] += (x + 0.5) / width
                        votes[b, (y * width + x) * channels + c, j] = vote.reshape(16)
    mu, a_ref, _ = em_routing(votes, act.reshape(batch, -1), layer.beta_u, layer.beta_a, 3, lambda_scale=1.0)
    poses_out, act_out = layer(poses, act)
    torch.testing.assert_close(poses_out, mu.view(batch, 4, 4, 4))
    torch.testing.assert_close(act_out, a_ref)
    layer.coordinate_addition = False
    assert not torch.allclose(layer(poses, act)[0], poses_out)


def test_coordinate_offsets_are_scaled_centres_in_the_right_column():
    offsets = coordinate_offsets(2, 4)
    assert offsets.shape == (2, 4, 4, 4)
    torch.testing.assert_close(offsets[:, 0, 0, 3], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(offsets[0, :, 1, 3], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 3] = mask[1, 3] = True
    assert (offsets[..., ~mask] == 0).all()
    assert ((offsets[..., mask] > 0) & (offsets[..., mask] < 1)).all()


def test_conv_and_class_caps_gradcheck():
    torch.manual_seed(0)
    conv = ConvMatrixCaps(1, 2, kernel_size=2, stride=1, iterations=2, lambda_scale=1.0, eps=1e-3).double()
    classes = ClassMatrixCaps(2, 2, iterations=2, lambda_scale=1.0, eps=1e-3).double()
    poses = torch.randn(1, 3, 3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    act = torch.rand(1, 3, 3, 1, dtype=torch.float64, requires_grad=True)

    def run(p, a):
        return classes(*conv(p, a))

    assert torch.autograd.gradcheck(run, (poses, act), fast_mode=True)
