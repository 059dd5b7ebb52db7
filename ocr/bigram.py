"""Character bigram language model with add-α smoothing (SPEC §1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path


class BigramLM:
    r"""Log conditional probabilities of one character following another.

    .. math::
        P(b \mid a) = \frac{\#(a, b) + \alpha}{\#a + \alpha V}

    with :math:`\#` counts in running text, :math:`V` the vocabulary size and α = 1 (Laplace).
    An unseen :math:`a` gives the uniform :math:`1/V`.

    Args:
        unigrams: count of each character.
        bigrams: count of each ordered pair of adjacent characters.
        alpha: the smoothing α (> 0).
        vocab_size: :math:`V`; default the number of characters in ``unigrams``.
    """

    def __init__(
        self,
        unigrams: Mapping[str, int],
        bigrams: Mapping[tuple[str, str], int],
        alpha: float = 1.0,
        vocab_size: int | None = None,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive (it keeps unseen pairs possible), got {alpha}")
        self.unigrams, self.bigrams, self.alpha = unigrams, bigrams, float(alpha)
        self.vocab_size = int(vocab_size or max(1, len(unigrams)))

    @classmethod
    def load(cls, path: Path | str | None = None, alpha: float = 1.0) -> BigramLM:
        """The model from a ``bigrams.tsv`` (default: the cached default language data)."""
        from ocr.charset import load_bigram_counts

        unigrams, bigrams = load_bigram_counts(path)
        return cls(unigrams, bigrams, alpha)

    def log_prob(self, a: str, b: str) -> float:
        """:math:`\\log P(b \\mid a)`."""
        pair = self.bigrams.get((a, b), 0) + self.alpha
        return math.log(pair) - math.log(self.unigrams.get(a, 0) + self.alpha * self.vocab_size)
