"""Exact resume of classifiers that draw random numbers while training (dropout, random shifts).

``linear_ae`` draws none, so its resume tests cannot tell whether the random generators travel in
the checkpoint. Here a SIGTERM lands mid-epoch in a run with dropout or random shifts and two
loader worker processes (``ocr_cnn``'s glyphs are rendered in them, with noise and jitter drawn per
index), or a second session trains a run on to more epochs; the resumed run must end with the weights
of a run never stopped, and a run whose checkpoints leave the generators out must not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, only_run, train
from test_recovery import assert_same_training, run_train, signal_at, state
from torch.utils.data import DataLoader, TensorDataset

from datamodules.synthetic import SyntheticDataModule
from litsuite.callbacks import RNGStateCheckpoint
from litsuite.requeue import EXIT_TERMINATED
from litsuite.resumable import ResumableDataLoader, resumable

# cnn_baseline (dropout 0.5) on synthetic data: 512 training images, 8 batches of 64 per epoch.
CNN = ("--model", "cnn_baseline", "--data", "synthetic", "--logger", "csv", "--data.init_args.num_samples", "640",
       "--data.init_args.batch_size", "64", "--data.init_args.num_workers", "2", "--model.channels", "[8]",
       "--model.hidden", "32", "--model.dropout", "0.5", *FAST)
# capsule on digits with random shifts of up to 1 pixel: 6 batches of 32 per epoch, a small network.
CAPSULE = ("--model", "capsule", "--data", "digits", "--logger", "csv", "--data.init_args.shift", "1",
           "--data.init_args.batch_size", "32", "--data.init_args.num_workers", "2",
           "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2", "--model.conv_channels", "16",
           "--model.primary_types", "4", "--model.class_dim", "8", "--model.decoder_hidden", "[32,64]", *FAST)
# capsule_em (EM routing, spread loss with its margin schedule) on Fashion-MNIST with random shifts of up to 2
# pixels drawn in two loader workers: 5 batches of 16 per epoch, a small network.
CAPSULE_EM = ("--model", "capsule_em", "--data", "fashion_mnist", "--logger", "csv", "--data.init_args.shift", "2",
              "--data.init_args.batch_size", "16", "--data.init_args.num_workers", "2",
              "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "1", "--model.conv_channels", "8",
              "--model.primary_types", "4", "--model.caps1_types", "4", "--model.caps2_types", "4",
              "--model.iterations", "2", *FAST)
# ocr_cnn with the center loss (learnable centres) on the 62 Latin letters and digits drawn with the DejaVu
# fonts, noise and jitter drawn per index, dropout: 5 batches of 32 per epoch, a small network.
OCR = ("--model", "ocr_cnn", "--data", "glyphs", "--logger", "csv", "--data.init_args.num_chinese", "0",
       "--data.init_args.font_dirs", "[/usr/share/fonts/truetype/dejavu]", "--data.init_args.sizes", "[46]",
       "--data.init_args.noise", "[0.05]", "--data.init_args.batch_size", "32", "--data.init_args.num_workers", "2",
       "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2", "--model.channels", "[8,8]",
       "--model.hidden", "32", "--model.loss", "center", *FAST)


@pytest.mark.parametrize("workers", [0, 2])
def test_only_the_resumed_epoch_leaves_batches_out(workers):
    """With persistent workers torch reuses one iterator for every epoch; the skip must not stay in it."""
    loader = resumable(DataLoader(TensorDataset(torch.arange(40)), batch_size=5, num_workers=workers,
                                  persistent_workers=workers > 0))
    assert isinstance(loader, ResumableDataLoader)
    loader.load_state_dict({"batches_done": 3})
    epochs = [[int(batch[0][0]) for batch in loader] for _ in range(3)]
    assert epochs == [[15, 20, 25, 30, 35], list(range(0, 40, 5)), list(range(0, 40, 5))]
    assert len(loader) == 8 and loader.state_dict() == {"batches_done": 8}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_building_a_loader_iterator_leaves_the_global_random_stream_alone(split):
    """A resumed process builds its validation iterator where the uninterrupted one did not (persistent
    workers build it once per process): it must not shift the stream dropout and shifts draw from."""
    dm = SyntheticDataModule(num_samples=64)
    dm.setup("fit")
    loader = getattr(dm, f"{split}_dataloader")()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)


def train_ok(*args: str, runs: str) -> Path:
    proc = run_train(*args, env={"LITSUITE_RUNS_DIR": runs})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return only_run(Path(runs))


def differs(a: dict, b: dict) -> bool:
    return any(not a["state_dict"][k].equal(b["state_dict"][k]) for k in a["state_dict"])


def leave_generator_states_out(checkpoint: dict, run: Path) -> None:
    """Writes ``checkpoint`` as the run's resume checkpoint without the random generators' states.

    In place: a copy of the run elsewhere would resume with its ModelCheckpoint's state left behind
    (another folder) and write its last checkpoint as ``last-v1.ckpt``."""
    checkpoint["callbacks"] = {k: v for k, v in checkpoint["callbacks"].items() if "RNGStateCheckpoint" not in k}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")


def resume(run: Path, runs: str) -> dict:
    resumed = run_train("--resume", str(run), env={"LITSUITE_RUNS_DIR": runs})
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert "Restored all states" in resumed.stdout + resumed.stderr
    return state(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,steps,stop,check_without",
    # each stops at batch 2 of epoch 1; ocr_cnn's draws in the main process are dropout's, as cnn_baseline's
    [(CNN, 24, 11, True), (CAPSULE, 18, 8, True), (CAPSULE_EM, 15, 7, True), (OCR, 15, 7, False)],
    ids=["cnn_baseline", "capsule", "capsule_em", "ocr_cnn"],
)
def test_classifier_with_random_draws_and_workers_resumes_mid_epoch_to_the_same_weights(args, steps, stop,
                                                                                        check_without):
    """SIGTERM mid-epoch, then ``--resume``: the weights (and the optimiser's moments, the center
    loss's centres among them) of a run never stopped; the same checkpoint without the random
    generators' states resumes to other weights (dropout's masks in the main process, random shifts
    drawn in loader workers)."""
    args = (*args, "--trainer.max_epochs", "3")
    straight = state(train_ok(*args, runs="straight"))
    assert straight["global_step"] == steps
    stopped = run_train(*args, *signal_at(stop), env={"LITSUITE_RUNS_DIR": "stopped"})
    assert stopped.returncode == EXIT_TERMINATED, (stopped.stdout + stopped.stderr)[-3000:]
    run = only_run(Path("stopped"))
    assert state(run)["global_step"] == stop
    stopped_state = state(run)
    resumed = resume(run, "stopped")
    assert_same_training(resumed, straight)
    for group, moments in straight["optimizer_states"][0]["state"].items():
        for name, value in moments.items():
            assert torch.equal(resumed["optimizer_states"][0]["state"][group][name], value), (group, name)
    if not check_without:
        return
    # the same interruption resumed again, from its checkpoint without the generators' states, ends elsewhere
    leave_generator_states_out(stopped_state, run)
    without = resume(run, "stopped")
    assert without["global_step"] == steps  # it trained on to the end
    assert differs(without, straight)


def continued_run(args: tuple[str, ...], runs: str, monkeypatch) -> dict:
    """The last checkpoint of a run trained for one epoch, then on to two by ``--resume <run dir>``."""
    monkeypatch.setenv("LITSUITE_RUNS_DIR", runs)
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    assert train(*args, "--trainer.max_epochs", "1") == 0
    run = only_run(Path(runs))
    assert state(run)["global_step"] == 8
    monkeypatch.delenv("LITSUITE_RUN_DIR", raising=False)
    assert train("--resume", str(run), "--trainer.max_epochs", "2") == 0
    assert only_run(Path(runs)) == run
    return state(run)


def test_a_second_session_trains_a_classifier_run_on_to_the_weights_of_one_long_run(monkeypatch):
    """``--resume <run dir> --trainer.max_epochs 2`` after one epoch, with dropout drawing masks all along.

    The learning rate is held constant (``lr_min_factor`` 1): the cosine schedule's length is fixed by
    the first session's ``max_epochs``, so only a constant rate is the same in both.
    """
    args = (*CNN, "--data.init_args.num_workers", "0", "--model.lr_min_factor", "1")
    monkeypatch.setenv("LITSUITE_RUNS_DIR", "straight")
    assert train(*args, "--trainer.max_epochs", "2") == 0
    straight = state(only_run(Path("straight")))
    assert straight["global_step"] == 16
    assert_same_training(continued_run(args, "sessions", monkeypatch), straight)

    # the same two sessions, with checkpoints that leave the generators' states out, end elsewhere
    monkeypatch.setattr(RNGStateCheckpoint, "state_dict", lambda self: {})
    without = continued_run(args, "no-rng", monkeypatch)
    assert without["global_step"] == 16 and "RNGStateCheckpoint" not in without["callbacks"]
    assert differs(without, straight)
