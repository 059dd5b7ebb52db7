"""Distributed correctness on 2 CPU processes (gloo): gradients and a whole training run."""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import FAST, only_run, run_script
from test_resume_classifiers import OCR

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def linear_ae_loss(model, x, y):
    x = x.flatten(1)
    return sum(torch.nn.functional.mse_loss(ae(x), x) for ae in model.autoencoders.values())


def classifier_loss(model, x, y):
    return model.loss(x, y)[0]  # the model's own training loss: margin + reconstruction, or spread


def make_linear_ae():
    from lit_modules.linear_ae import LinearAE

    torch.manual_seed(0)
    return LinearAE(input_shape=(1, 8, 8), k=8, sweep=(4,), optimizer="adam")  # every parameter has a gradient


def registry_model(name: str):
    """The registry's network for ``name`` on 8×8 digits (its default data), seeded alike on every rank."""
    from litsuite import registry

    config = registry.load_yaml(registry.model_config(name))["model"]
    module_name, class_name = config["class_path"].rsplit(".", 1)
    model_class = getattr(importlib.import_module(module_name), class_name)
    torch.manual_seed(0)
    return model_class(input_shape=(1, 8, 8), num_classes=10, **config["init_args"])


def make_capsule():
    return registry_model("capsule")


def make_capsule_em():
    return registry_model("capsule_em")


def make_ocr_cnn():
    """ocr_cnn with the center loss (its learnable centres), small, on 48×48 glyphs; no dropout, so
    that the two ranks and the single process draw no masks of their own."""
    from lit_modules.ocr_cnn import OCRCNN

    torch.manual_seed(0)
    model = OCRCNN(num_classes=10, channels=(4, 4), hidden=16, conv_dropout=0.0, dropout=0.0, loss="center")
    with torch.no_grad():
        model.criterion.center.centers.normal_()  # centres start at zero: move them off the features' origin
    return model


class LossOf(torch.nn.Module):
    """Puts the loss inside forward, so DDP's reducer sees the whole computation."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x, y):
        return self.loss_fn(self.model, x, y)


def _rank_gradients(rank, world, port, factory, loss_fn, batch, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(LossOf(factory(), loss_fn))
        ddp(*(t.chunk(world)[rank] for t in batch)).backward()  # DDP averages the gradients of the equal shards
        if rank == 0:
            out.update({n: p.grad.clone() for n, p in ddp.module.model.named_parameters()})
        dist.barrier()  # tear down together: a rank leaving while the other still talks can abort in gloo
    finally:
        dist.destroy_process_group()


def ddp_gradients(factory, loss_fn, batch, world=2):
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_rank_gradients, args=(world, free_port(), factory, loss_fn, batch, out), nprocs=world, join=True)
    return dict(out)


@pytest.mark.parametrize(
    "factory,loss_fn,side",
    [
        (make_linear_ae, linear_ae_loss, 8),
        (make_capsule, classifier_loss, 8),
        (make_capsule_em, classifier_loss, 8),
        (make_ocr_cnn, classifier_loss, 48),
    ],
    ids=["linear_ae", "capsule", "capsule_em", "ocr_cnn"],
)
def test_ddp_gradients_equal_single_process_gradients(factory, loss_fn, side):
    """Each rank takes half the global batch; DDP's averaged gradients equal one process's on the whole
    (ocr_cnn's include the center loss's centres, its class weights scale the per-sample terms)."""
    generator = torch.Generator().manual_seed(1)
    batch = (torch.rand(16, 1, side, side, generator=generator), torch.randint(0, 10, (16,), generator=generator))
    model = factory()
    loss_fn(model, *batch).backward()
    single = {n: p.grad for n, p in model.named_parameters()}
    # every parameter takes part: a gradient DDP never reduced could not differ from the single process's
    missing = [n for n, g in single.items() if g is None or not g.any()]
    assert not missing, missing
    distributed = ddp_gradients(factory, loss_fn, batch)
    assert single.keys() == distributed.keys()
    for name in single:
        torch.testing.assert_close(distributed[name], single[name], rtol=1e-5, atol=1e-7,
                                   msg=lambda m, name=name: f"{name}: {m}")


# the resume test's ocr_cnn run (center loss, Latin letters and digits on DejaVu), 3 batches of 16 per rank
OCR_RUN = (*OCR, "--data.init_args.batch_size", "16", "--data.init_args.num_workers", "0",
           "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "1")


@pytest.mark.parametrize(
    "args,effective_batch",
    [
        (("--model", "linear_ae", "--data", "synthetic", "--trainer.max_epochs", "3"), 64),  # 32 (linear_ae.yaml) × 2
        (OCR_RUN, 32),
    ],
    ids=["linear_ae", "ocr_cnn"],
)
def test_two_process_cpu_ddp_training_run(args, effective_batch):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_script("train.py", *args, "--devices", "2", "--logger", "csv", *FAST, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "MEMBER: 1/2" in output and "MEMBER: 2/2" in output
    run = only_run()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert output.count("run directory:") == 1  # rank zero speaks; both ranks share one directory
    assert f"effective batch {effective_batch}" in output  # per device × 2 processes


def test_two_process_gauss_newton_run_equals_one_process_with_the_same_global_batch():
    """linear_ae's Gauss–Newton steps: the batch code covariances travel as gradients (of the covariance
    probes), the SVRG snapshot is taken over the whole training set and broadcast, the encoder step is
    data-free: 2 ranks × 16 samples end with the weights of 1 process × 32, step for step."""
    common = ("--model", "linear_ae", "--data", "synthetic", "--logger", "none", "--trainer.max_epochs", "2",
              "--data.init_args.num_samples", "320", *FAST,  # 256 training samples: 8 equal global batches
              "--model.k", "4", "--model.sweep", "[2]")  # within the data's rank 6: well-conditioned steps
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = run_script("train.py", *common, "--data.init_args.batch_size", "32",
                        env={**env, "LITSUITE_RUNS_DIR": "single"}, timeout=600)
    assert single.returncode == 0, (single.stdout + single.stderr)[-3000:]
    ddp = run_script("train.py", *common, "--devices", "2", "--data.init_args.batch_size", "16",
                     env={**env, "LITSUITE_RUNS_DIR": "ddp"}, timeout=600)
    assert ddp.returncode == 0, (ddp.stdout + ddp.stderr)[-3000:]
    states = [
        torch.load(only_run(Path(root)) / "checkpoints" / "last.ckpt", weights_only=False)
        for root in ("single", "ddp")
    ]
    assert states[0]["global_step"] == states[1]["global_step"] == 16
    weights = [name for name in states[0]["state_dict"] if name.startswith("autoencoders.")]
    assert weights
    for name in weights:
        torch.testing.assert_close(states[1]["state_dict"][name], states[0]["state_dict"][name], rtol=1e-4, atol=1e-5)
