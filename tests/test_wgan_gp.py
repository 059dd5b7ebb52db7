"""wgan_gp: the critic/generator schedule, the single critic pass, settings errors, the loss guard, bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, only_run, train
from lightning.pytorch import Trainer

from datamodules.gaussian_ring import GaussianRingDataModule, mode_coverage, ring_modes
from lit_modules.components.gan_networks import CriticReLU, with_torch_activations
from lit_modules.wgan_gp import WGANGP
from litsuite.guards import FiniteLossGuard
from losses.wasserstein import critic_loss

RING = ("--model", "wgan_gp", "--data", "gaussian_ring", "--logger", "csv", "--data.init_args.num_samples", "640",
        "--data.init_args.batch_size", "64", "--model.fid_samples", "64", *FAST)


def ring_model(**kwargs) -> WGANGP:
    torch.manual_seed(0)
    return WGANGP(input_shape=(2,), latent_dim=4, width=16, **kwargs)


def test_critic_and_generator_steps_follow_n_critic():
    """7 batches with n_critic 3: 7 critic steps, generator steps after batches 2 and 5 (batch_idx, not global_step)."""
    model = ring_model(n_critic=3, ema_decay=0.5)
    data = GaussianRingDataModule(batch_size=32, num_samples=400)
    trainer = Trainer(max_epochs=1, limit_train_batches=7, limit_val_batches=0, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    critic_opt, generator_opt = trainer.optimizers
    steps = [int(next(iter(opt.state.values()))["step"]) for opt in (critic_opt, generator_opt)]
    assert steps == [7, 2]
    assert trainer.global_step == 9  # Lightning counts every optimiser's steps
    assert int(model.generator_ema.n_averaged) == 2  # the moving average follows each generator step


@pytest.mark.parametrize("joint", [True, False])
def test_critic_objective_equals_separate_passes(joint):
    model = ring_model(joint_critic_pass=joint)
    real, z, eps = torch.randn(8, 2), torch.randn(8, 4), torch.rand(8)
    loss, wasserstein, penalty = model.critic_objective(real, z, eps)
    loss.backward()
    joint = {n: p.grad.clone() for n, p in model.critic.named_parameters()}
    model.zero_grad()

    with torch.no_grad():
        fake = model.generator(z)
    x_hat = (eps[:, None] * real + (1 - eps[:, None]) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.critic(x_hat).sum(), x_hat, create_graph=True)
    expected_penalty = 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
    expected = critic_loss(model.critic(real), model.critic(fake)) + expected_penalty
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert penalty.item() == pytest.approx(expected_penalty.item(), rel=1e-5)
    for name, p in model.critic.named_parameters():
        torch.testing.assert_close(joint[name], p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("input_shape, norm", [((1, 8, 8), "none"), ((1, 8, 8), "layer")])
def test_critic_activation_gives_torch_leaky_relu_values_gradients_and_penalty_gradients(input_shape, norm):
    """CriticReLU only stops the penalty's zero second derivatives from flowing: every value stays the same."""
    torch.manual_seed(3)
    model = WGANGP(input_shape=input_shape, latent_dim=4, width=8, critic_norm=norm, ema_decay=0.0)
    critic, stock = model.critic, with_torch_activations(model.critic)
    assert any(isinstance(m, CriticReLU) for m in critic.modules())
    assert not any(isinstance(m, CriticReLU) for m in stock.modules())
    x = torch.randn(6, *input_shape)
    grads = []
    for net in (critic, stock):
        x_hat = x.clone().requires_grad_(True)
        out = net(x_hat)
        (g,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        penalty = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        weight_grads = torch.autograd.grad(penalty + out.mean(), list(net.parameters()))
        grads.append((out.detach(), g.detach(), weight_grads))
    (out_a, g_a, w_a), (out_b, g_b, w_b) = grads
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(g_a, g_b, rtol=0, atol=0)
    for a, b in zip(w_a, w_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (2,), "n_critic": 0}, "n_critic must be at least 1"),
        ({"input_shape": (2,), "network": "conv"}, "the conv network needs images"),
        ({"input_shape": (1, 30, 30)}, "square images with a side divisible by 4"),
        ({"input_shape": (1, 28, 28), "network": "mlp"}, "the mlp network needs vector samples"),
        ({"input_shape": (2,), "penalty_form": "both"}, "penalty_form must be one of"),
        ({"input_shape": (2,), "fid_classifier": "missing.ckpt"}, "no such checkpoint missing.ckpt"),
    ],
)
def test_bad_settings_are_one_clear_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        WGANGP(**kwargs)
    assert "\n" not in str(info.value)


def test_train_py_reports_a_bad_setting_in_one_line(capsys):
    assert train(*RING, "--model.network", "conv") != 0
    out = capsys.readouterr()
    (line,) = [ln for ln in out.err.splitlines() if ln.startswith("train.py: error:")]
    assert "the conv network needs images" in line and "Traceback" not in out.out + out.err


def test_loss_guard_reads_the_losses_a_manual_step_returns():
    guard = FiniteLossGuard()
    finite = guard.step_losses({"critic_loss": torch.tensor(1.0), "generator_loss": torch.tensor(-2.0)})
    assert torch.isfinite(finite).all() and finite.numel() == 2
    bad = guard.step_losses({"critic_loss": torch.tensor(1.0), "generator_loss": torch.tensor(float("nan"))})
    assert not torch.isfinite(bad).all()
    assert "(nan)" in guard.message(3, 0, 3, bad, None)  # names the bad value, not the first one


def test_a_nan_critic_loss_stops_training_in_one_line(capsys):
    assert train(*RING, "--trainer.max_epochs", "1", "--model.gp_weight", ".nan") == 1
    out = capsys.readouterr().err
    (line,) = [ln for ln in out.splitlines() if ln.startswith("train.py: error:")]
    assert "non-finite training loss (nan) at step 1 (epoch 0, batch 0)" in line


def test_bf16_mixed_trains_without_nan_and_writes_samples():
    assert train(*RING, "--trainer.max_epochs", "2", "--trainer.precision", "bf16-mixed") == 0
    run = only_run()
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] > 10
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    assert "val/fid" in (run / "metrics.csv").read_text().splitlines()[0]
    assert [p.name[:10] for p in sorted((run / "samples").glob("*.png"))] == ["epoch_0000", "epoch_0001"]


def test_mode_coverage_counts_points_near_each_mode():
    modes = ring_modes(4, radius=1.0)
    points = torch.cat([modes[0].repeat(6, 1), modes[1].repeat(3, 1), torch.tensor([[0.0, 0.0]])])
    coverage = mode_coverage(points, modes, std=0.05)
    assert coverage["near"] == pytest.approx(0.9)
    assert coverage["per_mode"] == pytest.approx([0.6, 0.3, 0.0, 0.0])
    assert coverage["modes_hit"] == 2


def test_loss_guard_reads_the_losses_a_step_only_logs():
    """A manual-optimisation step that returns nothing and logs a NaN loss is stopped too."""
    from lightning.pytorch import LightningModule

    from litsuite.guards import NonFiniteLossError

    class Module(LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.w = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            loss = (self.w * batch[0]).mean() * (float("nan") if batch_idx == 2 else 1.0)
            self.log("train/some_loss", loss)
            self.log("val_like/unrelated", 1.0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 1)), batch_size=2)

    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[FiniteLossGuard()])
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \(nan\) at step 0 \(epoch 0, batch 2\)"):
        trainer.fit(Module())


@pytest.mark.parametrize("data", ["fashion_mnist", "mnist", "cifar10", "digits", "gaussian_ring"])
def test_each_data_recipe_builds_and_trains_one_generator_iteration(data):
    """The model ``--model wgan_gp --data X`` composes (X's recipe over the model's defaults), on samples
    of X's shape: n_critic critic steps and a generator step, finite weights afterwards."""
    import importlib

    from litsuite import registry

    args = registry.load_yaml(registry.model_config("wgan_gp"))["model"]["init_args"]
    args.update(registry.load_yaml(registry.pairing_config("wgan_gp", data))["model"]["init_args"])
    module, name = registry.class_path_of(registry.load_yaml(registry.data_config(data)), "data").rsplit(".", 1)
    shape = getattr(importlib.import_module(module), name).input_shape
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in args.items()}
    model = WGANGP(input_shape=shape, **args)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(16, *shape)), batch_size=2)
    trainer = Trainer(max_epochs=1, limit_train_batches=model.hparams.n_critic, limit_val_batches=0,
                      accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, train_dataloaders=loader)
    steps = [int(next(iter(opt.state.values()))["step"]) for opt in trainer.optimizers]
    assert steps == [model.hparams.n_critic, 1]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_domain_fid_takes_a_classifier_trained_through_train_py(monkeypatch):
    """``--model.fid_classifier`` with a ``cnn_baseline`` checkpoint written by ``train.py``: the
    classifier is loaded while LightningCLI builds the GAN, and must keep its own hyperparameters (its
    forward reads them), not take the GAN's."""
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "classifier")
    assert train("--model", "cnn_baseline", "--data", "digits", "--logger", "csv", "--model.channels", "[8]",
                 "--model.hidden", "16", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.limit_val_batches", "1", *FAST) == 0
    ckpt = next((only_run(Path("classifier")) / "checkpoints").glob("*.ckpt"))
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "gan")
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    assert train("--model", "wgan_gp", "--data", "digits", "--logger", "csv", "--model.fid_classifier", str(ckpt),
                 "--model.fid_samples", "32", "--trainer.fast_dev_run", "true", *FAST) == 0
    model = WGANGP(input_shape=(1, 8, 8), fid_classifier=str(ckpt))
    assert model.fid.inception.classifier.hparams.hidden == 16 and "domain FID" in model.fid_label
