"""``skipgram``: it recovers a known model's structure, the rule sizes it, and bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, evaluate, only_run, train

from datamodules.base import DataError
from datamodules.skipgram import SkipGramDataModule
from lit_modules.skipgram import SkipGram


def _fit(datamodule: SkipGramDataModule, model: SkipGram, steps: int, seed: int = 0) -> None:
    """A plain loop over the module's own loss: enough to check what it learns, in a second."""
    torch.manual_seed(seed)
    pairs = datamodule.pairs_for_epoch(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        batch = pairs[torch.randint(len(pairs), (512,))]
        loss = model.pair_losses(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _true_and_learned_log_conditionals(datamodule, model) -> tuple[torch.Tensor, torch.Tensor]:
    truth = datamodule.truth
    true = (truth.u @ truth.v.T).log_softmax(dim=1)
    learned = (model.centre.weight @ model.context.weight.T).detach().double().log_softmax(dim=1)
    return true, learned


def test_training_on_a_synthetic_corpus_recovers_the_true_conditionals():
    data = SkipGramDataModule(num_words=40, true_dim=3, radius=2.0, num_pairs=40_000, seed=0)
    model = SkipGram(vocab_size=40, embedding_dim=3, loss="softmax", sparse=False)
    _fit(data, model, steps=300)
    true, learned = _true_and_learned_log_conditionals(data, model)
    weights = true.exp()
    # expected KL(p(.|i) || q(.|i)) under the true centre marginal: 0.021 when learned from these 40,000
    # pairs, against the mutual information of centre and context (0.94) for a model that learned nothing
    marginal = data.truth.centre_log_probs().exp()
    kl = float((marginal[:, None] * weights * (true - learned)).sum())
    correlation = torch.corrcoef(torch.stack((true.flatten(), learned.flatten())))[0, 1]
    assert kl < 0.05, kl
    assert correlation > 0.97, correlation


def test_a_model_trained_on_shuffled_contexts_does_not_recover_them():
    data = SkipGramDataModule(num_words=40, true_dim=3, radius=2.0, num_pairs=40_000, seed=0)
    real = data.pairs_for_epoch
    data.pairs_for_epoch = lambda epoch: torch.stack((real(epoch)[:, 0], real(epoch)[torch.randperm(40_000), 1]), 1)
    model = SkipGram(vocab_size=40, embedding_dim=3, loss="softmax", sparse=False)
    _fit(data, model, steps=300)
    true, learned = _true_and_learned_log_conditionals(data, model)
    assert torch.corrcoef(torch.stack((true.flatten(), learned.flatten())))[0, 1] < 0.5


def test_negative_sampling_learns_the_true_conditionals_up_to_the_noise_distribution():
    # At its optimum ⟨u_i, v_j⟩ = PMI(i, j) − log k (Levy and Goldberg 2014), so with noise p_n = the
    # context marginal, ⟨u_i, v_j⟩ + log p_n(j) is log p(j | i) up to a constant per row. The PMI matrix
    # holds the rank-3 scores plus a row and a column term: dimension 5 can hold it.
    data = SkipGramDataModule(num_words=40, true_dim=3, radius=2.0, num_pairs=40_000, seed=1)
    model = SkipGram(vocab_size=40, embedding_dim=5, negatives=5, sparse=False)
    truth = data.truth
    joint = (truth.u @ truth.v.T) - (truth.u @ truth.v.T).flatten().logsumexp(0)
    model.noise.copy_(joint.exp().sum(dim=0))
    _fit(data, model, steps=300)
    true = (truth.u @ truth.v.T).log_softmax(dim=1)
    scores = (model.centre.weight @ model.context.weight.T).detach().double() + model.noise.log()
    learned = scores.log_softmax(dim=1)
    assert torch.corrcoef(torch.stack((true.flatten(), learned.flatten())))[0, 1] > 0.9


def test_the_dimension_rule_sizes_the_embedding_when_none_is_given(capsys):
    model = SkipGram(vocab_size=100_000)
    assert model.embedding_dim == 96
    assert model.centre.weight.shape == (100_000, 96)
    assert SkipGram(vocab_size=50, embedding_dim=7).embedding_dim == 7


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda tmp: SkipGram(vocab_size=1), "N ≥ 2"),
        (lambda tmp: SkipGramDataModule(num_words=1), "N ≥ 2"),
        (lambda tmp: SkipGramDataModule(corpus=str(tmp / "empty.txt")), "empty"),
        (lambda tmp: SkipGramDataModule(corpus=str(tmp / "latin1.txt")), "not UTF-8"),
        (lambda tmp: SkipGramDataModule(corpus=str(tmp / "missing.txt")), "no such text file"),
        (lambda tmp: SkipGram(vocab_size=10, loss="hinge"), "negative_sampling, softmax"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, build, message):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("naïve café\n".encode("latin-1"))
    with pytest.raises((ValueError, DataError), match=message) as err:
        build(tmp_path)
    assert "\n" not in str(err.value)


def test_text_corpus_pairs_are_drawn_anew_each_epoch_and_reproducibly(tmp_path):
    words = " ".join(f"w{i % 7}" for i in range(400))
    (tmp_path / "t.txt").write_text("\n".join([words] * 20), encoding="utf-8")
    data = SkipGramDataModule(corpus=str(tmp_path / "t.txt"), min_count=1, window=3, held_out=0.2, seed=0)
    assert data.vocab_size == 7
    a, b = data.pairs_for_epoch(0), data.pairs_for_epoch(1)
    assert torch.equal(
        a,
        SkipGramDataModule(corpus=str(tmp_path / "t.txt"), min_count=1, window=3, held_out=0.2, seed=0).pairs_for_epoch(
            0
        ),
    )
    assert not torch.equal(a, b)


def test_each_centre_token_s_pairs_stay_together_and_batches_are_slices(tmp_path):
    words = " ".join(f"w{i % 101}" for i in range(300))
    (tmp_path / "t.txt").write_text("\n".join([words] * 20), encoding="utf-8")
    kwargs = dict(corpus=str(tmp_path / "t.txt"), min_count=1, sample=0, window=3, held_out=0.2, batch_size=100)
    text, shuffled = SkipGramDataModule(shuffle=False, **kwargs), SkipGramDataModule(shuffle=True, **kwargs)
    a, b = text.pairs_for_epoch(0), shuffled.pairs_for_epoch(0)
    # the same pairs (same subsampling and windows), in another order
    assert not torch.equal(a, b)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
    # shuffled: a run of one centre word is one token's window (at most 2 × window pairs; two neighbouring
    # tokens of the same word, 1 in 101, make a longer one); text order: word i is followed by word i + 1
    # within a line, so the centre goes up by 1 (mod 101) from run to run
    runs = torch.unique_consecutive(b[:, 0], return_counts=True)[1]
    assert (runs > 6).float().mean() < 0.03 and runs.float().mean() > 2
    steps = torch.unique_consecutive(a[:, 0]).diff() % 101
    assert (steps == 1).float().mean() > 0.99
    batches = [batch[0] for batch in shuffled.train_dataloader()]
    assert [len(x) for x in batches[:-1]] == [100] * (len(batches) - 1) and torch.equal(torch.cat(batches), b)


def test_consecutive_batches_are_slices_and_other_samplers_get_index_lists():
    from torch.utils.data import DistributedSampler, SequentialSampler

    from datamodules.skipgram import ConsecutiveBatches, PairDataset

    pairs = torch.arange(20).view(10, 2)
    data = PairDataset(pairs)
    slices = list(ConsecutiveBatches(SequentialSampler(data), 4, drop_last=False))
    assert slices == [range(0, 4), range(4, 8), range(8, 10)]
    assert torch.equal(data.__getitems__(slices[1])[0], pairs[4:8])
    assert len(list(ConsecutiveBatches(SequentialSampler(data), 4, drop_last=True))) == 2
    # under DDP Lightning puts a distributed sampler under the batch sampler: rank 1 of 2 gets every other pair
    ranked = list(ConsecutiveBatches(DistributedSampler(data, num_replicas=2, rank=1, shuffle=False), 4, False))
    assert ranked == [[1, 3, 5, 7], [9]]
    assert torch.equal(data.__getitems__(ranked[0])[0], pairs[[1, 3, 5, 7]])


def test_shared_noise_words_are_drawn_once_per_run_of_a_centre_word():
    model = SkipGram(vocab_size=20, embedding_dim=4)
    torch.nn.init.normal_(model.context.weight)
    pairs = torch.tensor([[3, 1], [3, 2], [3, 5], [7, 1], [7, 3], [3, 9]])  # runs: 3 (three pairs), 7, 3
    torch.manual_seed(0)
    shared = model.training_losses(pairs)
    torch.manual_seed(0)
    noise = model.sample_noise(3)
    expected = model.negative_sampling_losses(pairs, noise[torch.tensor([0, 0, 0, 1, 1, 2])])
    assert torch.allclose(shared, expected)
    per_pair = SkipGram(vocab_size=20, embedding_dim=4, share_noise=False)
    per_pair.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    drawn_per_pair = per_pair.training_losses(pairs)
    torch.manual_seed(0)
    assert torch.allclose(drawn_per_pair, model.negative_sampling_losses(pairs, model.sample_noise(6)))
    with pytest.raises(ValueError, match="3 rows of noise words"):
        model.shared_noise_losses(pairs, noise[:2])


def test_train_and_evaluate_through_the_entry_points(caplog):
    code = train(
        "--model",
        "skipgram",
        "--logger",
        "csv",
        "--data.init_args.num_words",
        "50",
        "--data.init_args.num_pairs",
        "4096",
        "--trainer.max_epochs",
        "2",
        *FAST,
    )
    assert code == 0
    said = [r.getMessage() for r in caplog.records if "rule gives" in r.getMessage()]
    assert said == ["skipgram: embedding_dim not set; the n > 8.33·ln N rule gives 33 for N = 50"]
    assert evaluate("--run", "last", "--logger", "none") == 0
    report = (Path("reports") / only_run().name / "report.md").read_text()
    assert "test/loss" in report and "test/softmax_ce" in report


def test_report_of_a_text_run_compares_with_gensim_on_the_same_words(tmp_path):
    text = tmp_path / "corpus.txt"
    lines = [" ".join(f"w{(i * 7 + j * 3) % 40}" for j in range(12)) for i in range(600)]
    text.write_text("\n".join(lines), encoding="utf-8")
    code = train(
        "--model",
        "skipgram",
        "--logger",
        "csv",
        "--data.init_args.corpus",
        str(text),
        "--data.init_args.min_count",
        "1",
        "--model.embedding_dim",
        "8",
        "--trainer.max_epochs",
        "1",
        *FAST,
    )
    assert code == 0
    assert evaluate("--run", "last", "--logger", "none") == 0
    report = (Path("reports") / only_run().name / "report.md").read_text()
    assert "gensim Word2Vec, same text and settings" in report
    assert "skipgram / gensim loss" in report
    assert (Path("reports") / only_run().name / "embedding_map.png").is_file()


def test_flattening_dimension_is_the_first_within_tolerance_of_the_best():
    from evaluation.dimension_study import flattening_dim

    assert flattening_dim([2, 4, 8, 16], [3.0, 2.0, 1.005, 1.0], 0.01) == 8
    assert flattening_dim([2, 4, 8, 16], [3.0, 2.0, 1.02, 1.0], 0.01) == 16


def test_dimension_study_writes_its_table_and_figure(tmp_path):
    from evaluation.dimension_study import main as study

    out = tmp_path / "study"
    assert (
        study(
            [
                "--sizes",
                "20",
                "--dims",
                "2",
                "4",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--data.init_args.num_pairs",
                "2048",
                "--trainer.accelerator",
                "cpu",
                "--trainer.enable_model_summary",
                "false",
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    assert "flattens at" in report and (out / "loss_vs_dimension.png").is_file()
    assert len(list((out / "runs").iterdir())) == 2


SMALL = ("--model", "skipgram", "--logger", "csv", "--data.init_args.num_words", "60",
         "--data.init_args.num_pairs", "6000", "--data.init_args.batch_size", "512", "--model.embedding_dim", "8")


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_ends_with_the_weights_of_an_uninterrupted_run(monkeypatch):
    from test_recovery import EXIT_TERMINATED, assert_same_training, run_train, signal_at, state

    straight = run_train(*SMALL, "--trainer.max_epochs", "2", *FAST, env={"LITSUITE_RUNS_DIR": "straight"})
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = run_train(*SMALL, "--trainer.max_epochs", "2", *FAST, *signal_at(16),
                        env={"LITSUITE_RUNS_DIR": "stopped"})
    assert stopped.returncode == EXIT_TERMINATED, stopped.stderr[-3000:]
    run = only_run(Path("stopped"))
    assert state(run)["global_step"] == 16  # 12 batches an epoch: mid-epoch of the second
    resumed = run_train(*SMALL, "--trainer.max_epochs", "2", *FAST, "--resume", str(run),
                        env={"LITSUITE_RUNS_DIR": "stopped"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(state(run), state(only_run(Path("straight"))))


@pytest.mark.slow
def test_two_process_ddp_training_with_sparse_gradients():
    from test_recovery import run_train

    done = run_train(*SMALL, "--trainer.max_epochs", "1", "--devices", "2", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = (only_run() / "metrics.csv").read_text()
    assert "val/loss" in metrics


def test_max_sentences_trains_on_fewer_sentences_with_the_same_vocabulary(tmp_path):
    lines = [" ".join(f"w{(i * 5 + j) % 9}" for j in range(10)) for i in range(50)]
    (tmp_path / "t.txt").write_text("\n".join(lines), encoding="utf-8")
    full = SkipGramDataModule(corpus=str(tmp_path / "t.txt"), min_count=1, held_out=0.2)
    part = SkipGramDataModule(corpus=str(tmp_path / "t.txt"), min_count=1, held_out=0.2, max_sentences=7)
    assert len(part.training_sentences()) == 7 < len(full.training_sentences())
    assert part.vocab.words == full.vocab.words and (part.word_counts == full.word_counts).all()
    assert torch.equal(part.test_dataloader().dataset.tensors[0], full.test_dataloader().dataset.tensors[0])


def test_sgd_steps_on_the_summed_pair_losses_and_adam_on_their_mean():
    losses = torch.tensor([1.0, 2.0, 3.0])
    assert SkipGram(vocab_size=10, embedding_dim=2).step_loss(losses).item() == 6.0
    assert SkipGram(vocab_size=10, embedding_dim=2, optimizer="adam").step_loss(losses).item() == 2.0
