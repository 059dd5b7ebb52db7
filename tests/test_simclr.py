"""simclr: per-image augmentation on the device, backbones, schedule, LARS groups, online classifier, resume."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from conftest import FAST, only_run

from lit_modules.components.backbones import ProjectionHead, build_backbone
from lit_modules.components.simclr_augment import SimCLRAugment, blur_kernel_size
from lit_modules.simclr import SimCLR
from optimizers.schedules import warmup_cosine


def structured_images(batch: int, channels: int, size: int) -> torch.Tensor:
    """One structured image repeated: any difference between the outputs comes from the augmentation."""
    ramp = torch.linspace(0.1, 0.9, size)
    image = torch.stack([(ramp.view(-1, 1) * ramp.view(1, -1)) ** (c + 1) for c in range(channels)])
    image[:, : size // 3, : size // 4] = 0.95  # a corner patch, so flips and crops show
    return image.expand(batch, channels, size, size).clone()


def distinct(outputs: torch.Tensor) -> int:
    return len({tuple(o.flatten().round(decimals=5).tolist()) for o in outputs})


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28)])
@pytest.mark.parametrize(
    "settings",
    [{}, {"strength": 0.0, "flip_p": 0.0}, {"crop_scale": (1.0, 1.0), "flip_p": 0.0, "jitter_p": 1.0}],
    ids=["recipe", "crop-only", "colour-only"],
)
def test_every_image_of_a_batch_gets_its_own_random_parameters(channels, size, settings):
    """One parameter set per call (torchvision v2 on a batch tensor) would give 1 distinct output here."""
    torch.manual_seed(0)
    images = structured_images(16, channels, size)
    views = SimCLRAugment((channels, size, size), **settings)(images)
    assert views.shape == images.shape and views.dtype == torch.float32
    assert views.min() >= 0 and views.max() <= 1
    assert distinct(views) == 16


def test_views_are_reproducible_from_the_seed_and_differ_between_seeds_and_calls():
    augment = SimCLRAugment((3, 32, 32))
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    first = augment.views(images)
    torch.manual_seed(5)
    again = augment.views(images)
    torch.manual_seed(6)
    other = augment.views(images)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[0], first[1])  # the two views of an image are drawn independently


def test_blur_follows_image_size_unless_set():
    names = lambda aug: [type(m).__name__ for m in aug.pipeline]
    assert "RandomGaussianBlur" not in names(SimCLRAugment((3, 32, 32)))
    assert "RandomGaussianBlur" in names(SimCLRAugment((3, 96, 96)))
    assert "RandomGaussianBlur" in names(SimCLRAugment((1, 28, 28), blur=True))
    assert "RandomGrayscale" not in names(SimCLRAugment((1, 28, 28)))
    assert blur_kernel_size(96, 96) == 11 and blur_kernel_size(224, 224) == 23 and blur_kernel_size(28, 28) == 3
    with pytest.raises(ValueError, match="1 or 3 channels"):
        SimCLRAugment((2, 32, 32))


def test_small_image_resnet_keeps_resolution_until_the_residual_stages():
    net = build_backbone("resnet18", 3)
    body = net.body
    assert body.conv1.kernel_size == (3, 3) and body.conv1.stride == (1, 1)
    assert isinstance(body.maxpool, torch.nn.Identity)
    x = torch.rand(2, 3, 32, 32)
    stem = body.relu(body.bn1(body.conv1(x)))
    assert stem.shape[-2:] == (32, 32)  # the ImageNet stem would leave 8×8
    assert body.layer4(body.layer3(body.layer2(body.layer1(stem)))).shape[-2:] == (4, 4)
    assert net(x).shape == (2, 512) and net.feature_dim == 512


def test_small_cnn_and_projection_head_shapes():
    net = build_backbone("small_cnn", 1)
    features = net(torch.rand(3, 1, 28, 28))
    assert features.shape == (3, net.feature_dim)
    assert ProjectionHead(net.feature_dim, 64, 128)(features).shape == (3, 128)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone("vgg", 1)


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine(110, 10, 110, min_factor=0.01) == pytest.approx(0.01)
    assert warmup_cosine(500, 10, None) == 1.0


class FakeTrainer:
    estimated_stepping_batches = 100
    max_epochs = 10
    num_training_batches = 10


def test_lars_adapts_and_decays_weights_only_and_the_classifier_has_its_own_rate():
    model = SimCLR(input_shape=(1, 8, 8), num_classes=4, weight_decay=0.1, lr=1.0, classifier_lr=0.05,
                   warmup_epochs=0, momentum=0.0)
    model.trainer = FakeTrainer()
    config = model.configure_optimizers()
    optimizer = config["optimizer"]
    weights, exempt, classifier = optimizer.param_groups
    assert all(p.ndim > 1 for p in weights["params"]) and all(p.ndim == 1 for p in exempt["params"])
    assert (weights["weight_decay"], exempt["weight_decay"], classifier["weight_decay"]) == (0.1, 0.0, 0.0)
    assert classifier["lr"] == pytest.approx(0.05) and {id(p) for p in classifier["params"]} == {
        id(p) for p in model.classifier.parameters()
    }
    # one step: a BatchNorm scale moves by lr·grad exactly; a conv kernel by its trust ratio instead
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    bn = model.backbone.body[1].weight
    conv = model.backbone.body[0].weight
    before_bn, before_conv = bn.detach().clone(), conv.detach().clone()
    optimizer.step()
    torch.testing.assert_close(before_bn - bn.detach(), torch.ones_like(bn))
    step = (before_conv - conv.detach()).abs().max().item()
    assert step < 0.1  # trust ratio η·‖w‖/‖g + λw‖ with η = 0.001, far below lr·grad = 1


def test_online_classifier_does_not_train_the_backbone():
    torch.manual_seed(0)
    model = SimCLR(input_shape=(1, 8, 8), num_classes=4)
    images, labels = torch.rand(6, 1, 8, 8), torch.arange(6) % 4
    model.log = lambda *a, **k: None  # no trainer here

    def backbone_grads(include_classifier: bool):
        model.zero_grad()
        torch.manual_seed(1)
        view1, view2 = model.augment.views(images)
        loss, _, features = model.contrast(view1, view2)
        if include_classifier:
            loss = loss + torch.nn.functional.cross_entropy(model.classifier(features.detach()), labels.repeat(2))
        loss.backward()
        return [p.grad.clone() for p in model.backbone.parameters()], model.classifier.weight.grad

    with_classifier, classifier_grad = backbone_grads(True)
    without, _ = backbone_grads(False)
    assert classifier_grad is not None and classifier_grad.abs().sum() > 0
    for a, b in zip(with_classifier, without):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_simclr_stopped_mid_epoch_resumes_to_the_same_weights():
    """Augmentation draws from torch's generator: restored from the checkpoint, the views are the same."""
    from test_recovery import assert_same_training, run_train, signal_at, state

    # 205 training images in batches of 16: 13 steps per epoch, so step 17 is mid-epoch 1
    common = ("--model", "simclr", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "256",
              "--data.init_args.batch_size", "16", "--model.warmup_epochs", "1", "--trainer.max_epochs", "2", *FAST)
    # every session in a new process with the same thread count: convolutions sum in a thread-dependent order
    uninterrupted = run_train(*common, env={"LITSUITE_RUNS_DIR": "straight"})
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    straight = only_run(Path("straight"))

    stopped = run_train(*common, *signal_at(17, signal.SIGTERM), env={"LITSUITE_RUNS_DIR": "stopped"})
    assert stopped.returncode == 143, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    run = only_run(Path("stopped"))
    assert state(run)["global_step"] == 17
    resumed = run_train(*common, "--resume", "auto", env={"LITSUITE_RUNS_DIR": "stopped"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(state(run), state(straight))


@pytest.mark.slow
def test_two_process_ddp_training_run_gathers_negatives_and_validates():
    """train.py on 2 gloo processes: the gathered loss, its validation pass and the checkpoint all work, and
    evaluate.py writes the report of the run the two processes made."""
    import os

    from conftest import run_script

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_script("train.py", "--model", "simclr", "--data", "synthetic", "--devices", "2", "--logger", "csv",
                        "--data.init_args.num_samples", "200", "--data.init_args.batch_size", "16",
                        "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1", *FAST, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "effective batch 32" in output
    run = only_run()
    header, *rows = (run / "metrics.csv").read_text().splitlines()
    assert "val/acc" in header and "val/infonce" in header and "train/grad_norm" in header
    assert (run / "checkpoints" / "last.ckpt").is_file()
    evaluated = run_script("evaluate.py", "--run", str(run), env={**env, "LITSUITE_PROBE_TRAIN": "200"}, timeout=600)
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    report_dir = Path("reports") / run.name
    md = (report_dir / "report.md").read_text()
    for section in ("Frozen features against raw pixels", "Contrastive space", "coloured by class",
                    "Two augmented views per image", "Training curves"):
        assert section in md, section
    assert "Test metrics" not in md  # no test pass: a contrastive model has no test_step
    assert (report_dir / "feature_map.png").stat().st_size > 1000
