"""The capsule networks and their CNN baseline: shapes, losses, size checks, routing iterations after training."""

from __future__ import annotations

import pytest
import torch

from lit_modules.capsule import CapsNet
from lit_modules.capsule_em import MatrixCapsNet
from lit_modules.cnn_baseline import CNNBaseline
from lit_modules.components.capsule_decoder import CapsuleDecoder, mask_capsules, reconstruction_sse
from losses.margin import margin_loss

SMALL_CAPSNET = {"conv_channels": 16, "primary_types": 4, "primary_dim": 8, "class_dim": 8}
KERNELS_8X8 = {"conv_kernel": 3, "primary_kernel": 3, "primary_stride": 1}
SMALL_EM = {"conv_channels": 8, "primary_types": 2, "caps1_types": 3, "caps2_types": 3}
EM_8X8 = {"conv_kernel": 3, "conv_stride": 1, "caps1_stride": 1}


@pytest.mark.parametrize(
    "shape, kernels",
    [((1, 8, 8), KERNELS_8X8), ((1, 28, 28), {}), ((3, 32, 32), {}), ((2, 32, 32), KERNELS_8X8)],
)
def test_capsnet_shapes_and_loss(shape, kernels):
    torch.manual_seed(0)
    model = CapsNet(input_shape=shape, num_classes=5, **SMALL_CAPSNET, **kernels)
    x, y = torch.rand(3, *shape), torch.tensor([0, 4, 2])
    capsules, coupling = model.capsules(x)
    assert capsules.shape == (3, 5, 8) and coupling.shape == (3, model.num_primary, 5)
    lengths = model(x)
    assert lengths.shape == (3, 5) and ((lengths > 0) & (lengths < 1)).all()
    assert model.reconstruct(x).shape == (3, *shape)
    total, scores, terms = model.loss(x, y)
    # margin loss plus 0.0005 × SSE (sum over pixels, mean over the batch)
    sse = (model.decoder(capsules, y) - x).pow(2).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(terms["reconstruction_sse"], sse)
    torch.testing.assert_close(total, margin_loss(lengths, y) + 0.0005 * sse)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_capsnet_options_routing_shared_weights_and_no_decoder():
    model = CapsNet(
        input_shape=(1, 8, 8),
        num_classes=4,
        routing="su",
        shared_weights=True,
        decoder=False,
        **SMALL_CAPSNET,
        **KERNELS_8X8,
    )
    assert model.class_caps.weight.shape == (4, 8, 8)  # one matrix per class, shared by the primary capsules
    total, _, terms = model.loss(torch.rand(2, 1, 8, 8), torch.tensor([1, 3]))
    assert set(terms) == {"margin_loss"} and torch.isfinite(total)
    with pytest.raises(RuntimeError, match="decoder=False"):
        model.reconstruct(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="routing must be one of"):
        CapsNet(input_shape=(1, 8, 8), routing="kmeans", **KERNELS_8X8)


def test_capsnet_size_errors_name_the_layer_and_the_options():
    with pytest.raises(ValueError, match=r"conv \(kernel 9.*8×8.*--model.conv_kernel"):
        CapsNet(input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"primary capsules \(kernel 9, stride 2.*6×6"):
        CapsNet(input_shape=(1, 8, 8), conv_kernel=3)


def test_decoder_masks_all_but_one_capsule_and_sse_is_summed_per_image():
    capsules = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    masked = mask_capsules(capsules, torch.tensor([2, 0])).view(2, 3, 4)
    assert torch.equal(masked[0, 2], capsules[0, 2]) and masked[0, :2].abs().sum() == 0
    assert torch.equal(masked[1, 0], capsules[1, 0]) and masked[1, 1:].abs().sum() == 0
    decoder = CapsuleDecoder(3, 4, (1, 5, 5), hidden=(7, 9))
    out = decoder(capsules, torch.tensor([0, 1]))
    assert out.shape == (2, 1, 5, 5) and ((out > 0) & (out < 1)).all()
    images = torch.zeros(2, 1, 5, 5)
    images[0] = 1.0  # 25 pixels off by one in the first image, none in the second
    assert reconstruction_sse(torch.zeros_like(images), images).item() == pytest.approx(25 / 2)


@pytest.mark.parametrize(
    "model_class, options", [(CapsNet, {**SMALL_CAPSNET, **KERNELS_8X8}), (MatrixCapsNet, {**SMALL_EM, **EM_8X8})]
)
def test_routing_iterations_can_change_after_training(tmp_path, model_class, options):
    torch.manual_seed(0)
    model = model_class(input_shape=(1, 8, 8), num_classes=4, iterations=3, **options).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        three = model(x)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "hparams": dict(model.hparams)}, path)
    saved = torch.load(path, weights_only=False)
    restored = model_class(**saved["hparams"]).eval()
    restored.load_state_dict(saved["state_dict"])
    assert restored.routing_iterations == 3
    restored.routing_iterations = 1
    layers = getattr(restored, "routing_layers", (restored.class_caps,))
    assert all(layer.iterations == 1 for layer in layers)
    with torch.no_grad():
        one = restored(x)
        restored.routing_iterations = 3
        torch.testing.assert_close(restored(x), three)
    assert not torch.allclose(one, three)
    with pytest.raises(ValueError, match="at least one iteration"):
        restored.routing_iterations = 0


@pytest.mark.parametrize(
    "shape, options, grids",
    [
        ((1, 8, 8), EM_8X8, [(6, 6), (4, 4), (2, 2)]),
        ((1, 28, 28), {}, [(12, 12), (5, 5), (3, 3)]),
        ((3, 32, 32), {}, [(14, 14), (6, 6), (4, 4)]),
    ],
)
def test_matrix_capsnet_shapes_on_every_input_size(shape, options, grids):
    model = MatrixCapsNet(input_shape=shape, num_classes=10, lambda_scale=1.0, **SMALL_EM, **options)
    assert model.grid_sizes == grids
    poses, activations = model.capsules(torch.rand(2, *shape))
    assert poses.shape == (2, 10, 4, 4) and activations.shape == (2, 10)
    assert ((activations > 0) & (activations < 1)).all()
    loss, scores, terms = model.loss(torch.rand(2, *shape), torch.tensor([1, 9]))
    assert scores.shape == (2, 10) and terms["spread_margin"].item() == pytest.approx(0.2)  # logged in training
    loss.backward()
    assert model.class_caps.beta_a.grad is not None and model.caps1.beta_u.grad is not None


def test_matrix_capsnet_size_error_suggests_settings_for_digits():
    with pytest.raises(
        ValueError,
        match=r"ConvCaps1 \(kernel 3, stride 2.*2×2 input.*8×8 → 2×2.*conv 3×3 stride 1, capsule strides 1 and 1",
    ):
        MatrixCapsNet(input_shape=(1, 8, 8))


def test_variance_floor_reaches_every_em_layer_and_must_be_positive():
    model = MatrixCapsNet(input_shape=(1, 8, 8), variance_floor=0.01, **SMALL_EM, **EM_8X8)
    assert [layer.eps for layer in model.routing_layers] == [0.01, 0.01, 0.01]
    with pytest.raises(ValueError, match="variance_floor must be positive"):
        MatrixCapsNet(input_shape=(1, 8, 8), variance_floor=0.0, **SMALL_EM, **EM_8X8)


def test_spread_margin_rises_linearly_over_the_ramp():
    model = MatrixCapsNet(input_shape=(1, 8, 8), **SMALL_EM, **EM_8X8)
    assert [round(model.margin_at(s, 100), 6) for s in (0, 50, 100, 150)] == [0.2, 0.55, 0.9, 0.9]
    half = MatrixCapsNet(input_shape=(1, 8, 8), margin_ramp=0.5, **SMALL_EM, **EM_8X8)
    assert [round(half.margin_at(s, 100), 6) for s in (0, 25, 50, 100)] == [0.2, 0.55, 0.9, 0.9]


def test_cnn_baseline_shapes_and_pooling_on_small_images():
    for shape in ((1, 8, 8), (3, 32, 32), (1, 2, 2)):
        model = CNNBaseline(input_shape=shape, num_classes=7, channels=(4, 8, 8), hidden=16)
        logits = model(torch.rand(3, *shape))
        assert logits.shape == (3, 7)
        loss, scores, terms = model.loss(torch.rand(3, *shape), torch.tensor([0, 6, 3]))
        assert terms == {} and torch.isfinite(loss)
    with pytest.raises(ValueError, match="odd"):
        CNNBaseline(input_shape=(1, 8, 8), kernel_size=4)


def test_spread_margin_follows_the_trainer_and_is_saved_in_checkpoints(tmp_path):
    from lightning.pytorch import Callback, Trainer

    from datamodules.synthetic import SyntheticDataModule

    class Record(Callback):
        def __init__(self):
            self.margins = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.margins.append(round(pl_module.margin.item(), 5))

    record = Record()
    model = MatrixCapsNet(input_shape=(1, 8, 8), num_classes=4, iterations=1, **SMALL_EM, **EM_8X8)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=SyntheticDataModule(num_samples=64, batch_size=8))
    assert record.margins == [round(0.2 + 0.7 * step / 6, 5) for step in range(6)]
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]["margin"]
    assert saved.item() == pytest.approx(0.2 + 0.7 * 5 / 6)
