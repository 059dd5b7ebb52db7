"""Reading text, the vocabulary, subsampling and skip-gram pairs, on tiny texts with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.base import DataError
from datamodules.text_vocab import (
    build_vocabulary,
    keep_probabilities,
    read_lines,
    skipgram_pairs,
    tokenize,
)


def test_vocabulary_of_a_tiny_text_has_the_known_counts_in_frequency_order(tmp_path):
    (tmp_path / "t.txt").write_text("the cat sat\n\nthe cat ran the end\n", encoding="utf-8")
    sentences = [tokenize(line) for line in read_lines(tmp_path / "t.txt")]
    vocab = build_vocabulary(sentences, min_count=2)
    assert vocab.words == ["the", "cat"]
    assert vocab.counts.tolist() == [3, 2]
    full = build_vocabulary(sentences, min_count=1)
    assert full.words == ["the", "cat", "sat", "ran", "end"]  # ties in first-seen order
    assert full.encode(["cat", "dog", "the"]).tolist() == [1, 0]


def test_a_folder_is_read_file_by_file_and_chinese_is_segmented(tmp_path):
    (tmp_path / "b.txt").write_text("我们 爱 北京/ns\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Hello World\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("skipped\n", encoding="utf-8")
    lines = read_lines(tmp_path)
    assert lines == ["Hello World", "我们 爱 北京/ns"]
    assert tokenize(lines[0]) == ["hello", "world"]
    assert tokenize("迈向/v  充满/v  希望/n", tagged=True) == ["迈向", "充满", "希望"]
    assert "".join(tokenize("我们爱北京天安门")) == "我们爱北京天安门"
    assert len(tokenize("我们爱北京天安门")) > 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\n  \n", "empty"), (b"caf\xe9 au lait\n", "not UTF-8 text \\(byte 3 is 0xe9\\)")],
)
def test_bad_text_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_lines(path)
    assert "\n" not in str(err.value)


def test_a_vocabulary_below_two_words_is_refused():
    with pytest.raises(DataError, match="N ≥ 2"):
        build_vocabulary([["a", "a", "b"]], min_count=2)


def test_keep_probability_follows_word2vec_and_spares_rare_words():
    counts = np.array([1000, 10, 1])
    keep = keep_probabilities(counts, sample=1e-2)
    z = counts / counts.sum()
    assert keep[0] == pytest.approx((np.sqrt(z[0] / 1e-2) + 1) * 1e-2 / z[0])
    assert keep[0] < 0.2 and keep[1] == keep[2] == 1.0
    assert (keep_probabilities(counts, sample=0) == 1).all()


def test_pairs_with_a_fixed_window_are_every_neighbour_within_the_sentence():
    tokens = np.array([10, 11, 12, 20, 21])
    sentences = np.array([0, 0, 0, 1, 1])

    class FullWindow:  # draws b = 0: every centre uses the whole window
        def integers(self, low, high, size):
            return np.zeros(size, dtype=np.int64)

    pairs = skipgram_pairs(tokens, sentences, window=2, rng=FullWindow())
    expected = [(10, 11), (10, 12), (11, 10), (11, 12), (12, 10), (12, 11), (20, 21), (21, 20)]
    assert sorted(map(tuple, pairs.tolist())) == sorted(expected)
    assert pairs[:, 0].tolist() == sorted(pairs[:, 0].tolist())  # grouped by centre position


def test_dynamic_window_pairs_near_words_more_often_and_is_seeded():
    rng_tokens = np.arange(2000) % 50
    sentences = np.zeros(2000, dtype=np.int64)
    a = skipgram_pairs(rng_tokens, sentences, 5, np.random.default_rng(3))
    b = skipgram_pairs(rng_tokens, sentences, 5, np.random.default_rng(3))
    assert np.array_equal(a, b)
    distance = np.abs(((a[:, 1] - a[:, 0]) + 25) % 50 - 25)
    share = [np.mean(distance == d) for d in range(1, 6)]
    # P(distance d used) = (window - d + 1) / window: 5:4:3:2:1
    assert share == pytest.approx([5 / 15, 4 / 15, 3 / 15, 2 / 15, 1 / 15], abs=0.01)
