"""gensim's ``Word2Vec`` (skip-gram, negative sampling) on the same text and settings as a ``skipgram`` run.

The reference a ``skipgram`` run is measured against: same training sentences, vocabulary rule
(``min_count``, at most ``num_words`` words), window, subsampling threshold, number of noise
words, dimension and epochs. Its input vectors (``wv.vectors``) and output vectors (``syn1neg``)
are re-indexed to the suite's vocabulary, so the held-out pairs are scored by the same loss
functions for both.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from datamodules.skipgram import SkipGramDataModule


@dataclass
class GensimResult:
    """gensim's vectors in the suite's word order, and how long training took."""

    centre: torch.Tensor  # (N, n) input vectors
    context: torch.Tensor  # (N, n) output vectors
    seconds: float
    cpu_seconds: float  # CPU time of this process (all threads) while gensim trained
    words_trained: int  # running words of the training text times epochs (before subsampling, as gensim counts)

    @property
    def words_per_second(self) -> float:
        return self.words_trained / self.seconds


def train_gensim(
    datamodule: SkipGramDataModule, dim: int, epochs: int, negatives: int = 5, workers: int | None = None, seed: int = 0
) -> GensimResult:
    """Train gensim's skip-gram on the data module's training sentences, vocabulary and settings.

    Args:
        datamodule: a text-corpus ``SkipGramDataModule`` (the synthetic corpus has no sentences).
        dim: vector size.
        epochs: passes over the text.
        negatives: noise words per pair.
        workers: gensim's threads (default: the cores this process may use).
        seed: gensim's seed.
    """
    from gensim.models import Word2Vec

    sentences = datamodule.training_sentences()
    if sentences is None:
        raise ValueError("gensim's reference needs a text corpus; the synthetic corpus is pairs, not sentences")
    h = datamodule.hparams
    workers = workers or len(os.sched_getaffinity(0))
    model = Word2Vec(
        vector_size=dim,
        window=h.window,
        min_count=1,
        sample=h.sample,
        sg=1,
        hs=0,
        negative=negatives,
        ns_exponent=0.75,
        workers=workers,
        seed=seed,
    )
    # the suite's own vocabulary and counts, so both models embed the same words and subsample alike
    vocab = datamodule.vocab
    model.build_vocab_from_freq({w: int(c) for w, c in zip(vocab.words, vocab.counts)})
    started, cpu = time.perf_counter(), time.process_time()
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    order = [model.wv.key_to_index.get(word) for word in datamodule.vocab.words]
    missing = sum(i is None for i in order)
    if missing:
        raise ValueError(f"gensim's vocabulary lacks {missing} of the suite's words; the vocabulary rules disagree")
    index = torch.tensor(order)
    return GensimResult(
        centre=torch.from_numpy(model.wv.vectors)[index].float(),
        context=torch.from_numpy(model.syn1neg)[index].float(),
        seconds=seconds,
        cpu_seconds=cpu,
        words_trained=int(sum(len(s) for s in sentences) * epochs),
    )


def held_out_comparison(
    model, result: GensimResult, pairs: torch.Tensor, batch_size: int = 4096, softmax: bool = True
) -> dict[str, dict]:
    """The same held-out losses for a ``skipgram`` model and for gensim's vectors.

    gensim's input vectors (``wv``) and output vectors (``syn1neg``) are put into a copy of ``model``,
    so both are scored by one function on the same pairs with the same seeded noise words drawn from
    the same unigram^0.75 distribution: the negative-sampling loss (what both minimise) and, unless
    ``softmax`` is False, the full-softmax cross-entropy −log p(context | centre).

    Returns:
        ``{"skipgram": {"loss", "softmax_ce"}, "gensim": {...}, "ratio": skipgram loss / gensim's}``.
    """
    import copy

    from evaluation.models.skipgram import held_out_losses

    reference = copy.deepcopy(model).cpu().eval()
    reference.centre.weight.data.copy_(result.centre)
    reference.context.weight.data.copy_(result.context)
    ours = held_out_losses(model.cpu().eval(), pairs, batch_size, softmax)
    theirs = held_out_losses(reference, pairs, batch_size, softmax)
    return {"skipgram": ours, "gensim": theirs, "ratio": ours["loss"] / theirs["loss"]}
