"""The generating skip-gram model: its samples follow p(i, j), and its entropies match their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.synthetic_skipgram import GroundTruthSkipGram
from lit_modules.components.embedding_dimension import h_n


def test_sampled_pairs_follow_the_joint_distribution():
    truth = GroundTruthSkipGram(vocab_size=6, dim=3, radius=1.5, seed=1, chunk=4)
    pairs = truth.sample_pairs(60_000, torch.Generator().manual_seed(0))
    counts = torch.zeros(6, 6, dtype=torch.float64)
    counts.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs), dtype=torch.float64), accumulate=True)
    joint = (truth.u @ truth.v.T).exp()
    joint /= joint.sum()
    assert torch.allclose(counts / counts.sum(), joint, atol=0.006)


def test_entropies_equal_their_definitions_on_the_full_table():
    truth = GroundTruthSkipGram(vocab_size=7, dim=4, seed=2, chunk=3)
    joint = (truth.u @ truth.v.T).exp()
    joint /= joint.sum()
    h_joint = float(-(joint * joint.log()).sum())
    marginal = joint.sum(dim=1)
    h_cond = float(-(joint * (joint / marginal[:, None]).log()).sum())
    assert truth.joint_entropy() == pytest.approx(h_joint, rel=1e-10)
    assert truth.conditional_entropy() == pytest.approx(h_cond, rel=1e-10)


def test_joint_entropy_at_radius_sqrt_n_is_near_the_rules_2_ln_n_plus_h_n():
    # the rule's approximation holds for many words spread over the sphere
    n, vocab = 16, 3000
    truth = GroundTruthSkipGram(vocab_size=vocab, dim=n, seed=0)
    assert truth.joint_entropy() == pytest.approx(2 * math.log(vocab) + h_n(n), abs=0.1)


def test_a_vocabulary_below_two_is_refused():
    with pytest.raises(ValueError, match="N ≥ 2"):
        GroundTruthSkipGram(vocab_size=1, dim=4)
