"""``skipgram`` under 2-process gloo DDP: its step's sparse gradients equal one process's on the global batch."""

from __future__ import annotations

import pytest
import torch
from test_ddp import ddp_gradients

pytestmark = pytest.mark.slow

VOCAB, DIM = 30, 6


def make_skipgram():
    from lit_modules.skipgram import SkipGram

    torch.manual_seed(0)
    model = SkipGram(vocab_size=VOCAB, embedding_dim=DIM, optimizer="sgd", lr=0.025)
    torch.nn.init.normal_(model.context.weight)  # word2vec starts them at zero: the centre's gradient would be too
    return model


def skipgram_step_loss(model, pairs, noise):
    """The loss ``training_step`` steps on, with the noise words drawn once for the global batch."""
    return model.step_loss(model.negative_sampling_losses(pairs, noise))


def test_ddp_sparse_gradients_equal_single_process_gradients_on_the_global_batch():
    generator = torch.Generator().manual_seed(1)
    pairs = torch.randint(0, VOCAB, (64, 2), generator=generator)
    noise = torch.randint(0, VOCAB, (64, 5), generator=generator)
    model = make_skipgram()
    skipgram_step_loss(model, pairs, noise).backward()
    assert model.centre.weight.grad.is_sparse and model.context.weight.grad.is_sparse
    single = {name: p.grad.to_dense() for name, p in model.named_parameters()}
    assert all(g.any() for g in single.values())
    gathered = ddp_gradients(make_skipgram, skipgram_step_loss, (pairs, noise))
    distributed = {name: g.to_dense() for name, g in gathered.items()}
    assert single.keys() == distributed.keys()
    for name in single:
        torch.testing.assert_close(distributed[name], single[name], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")


def shared_noise_step_loss(model, pairs, noise):
    """The loss ``training_step`` steps on with ``share_noise``: one row of noise words per run of a centre word."""
    return model.step_loss(model.shared_noise_losses(pairs, noise))


def test_ddp_gradients_with_shared_noise_words_equal_single_process_gradients():
    generator = torch.Generator().manual_seed(2)
    centres = torch.randperm(VOCAB, generator=generator)[:16].repeat_interleave(4)  # 16 runs of 4 pairs
    pairs = torch.stack((centres, torch.randint(0, VOCAB, (64,), generator=generator)), dim=1)
    noise = torch.randint(0, VOCAB, (16, 5), generator=generator)  # each rank takes 8 runs and their rows
    model = make_skipgram()
    shared_noise_step_loss(model, pairs, noise).backward()
    single = {name: p.grad.to_dense() for name, p in model.named_parameters()}
    assert all(g.any() for g in single.values())
    gathered = ddp_gradients(make_skipgram, shared_noise_step_loss, (pairs, noise))
    for name in single:
        torch.testing.assert_close(gathered[name].to_dense(), single[name], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
