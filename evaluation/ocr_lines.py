"""Character error rate of reading rendered lines: cutting + CNN, + the bigram model, and Tesseract.

All three read the same images (held-out corpus text drawn with held-out font families), and are
scored with torchmetrics' ``CharErrorRate`` (edit distance / reference length, summed over lines).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchmetrics.text import CharErrorRate

TESSERACT_LANGS = "chi_sim+eng"


@dataclass
class LineReading:
    """What one reader made of the lines: its texts, their CER, and the seconds it took."""

    name: str
    texts: list[str]
    cer: float
    seconds: float


def character_error_rate(predictions: list[str], references: list[str]) -> float:
    """Edit operations needed to turn the predictions into the references, over the reference characters."""
    return float(CharErrorRate()(predictions, references))


def read_with(name: str, read, images: list[np.ndarray], references: list[str]) -> LineReading:
    """Apply ``read(gray) -> str`` to every line; an unreadable line counts as empty text."""
    start = time.perf_counter()
    texts = []
    for gray in images:
        try:
            texts.append(read(gray))
        except Exception:  # a reader that finds nothing on a line reads it as empty: all its characters wrong
            texts.append("")
    return LineReading(name, texts, character_error_rate(texts, references), time.perf_counter() - start)


def tesseract_available(langs: str = TESSERACT_LANGS) -> str | None:
    """None when the ``tesseract`` CLI and its language data are installed; otherwise what is missing."""
    exe = shutil.which("tesseract")
    if exe is None:
        return "the tesseract command is not installed (Debian: tesseract-ocr tesseract-ocr-chi-sim)"
    listed = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60)
    have = set((listed.stdout + listed.stderr).split())
    missing = [lang for lang in langs.split("+") if lang not in have]
    return f"tesseract lacks the language data {missing} (Debian: tesseract-ocr-chi-sim)" if missing else None


def tesseract_read(images: list[np.ndarray], langs: str = TESSERACT_LANGS) -> list[str]:
    """Tesseract's text of each line image, one process for all of them (``--psm 7``: one text line).

    Tesseract separates CJK characters with spaces; whitespace is removed since the references
    have none.
    """
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, gray in enumerate(images):
            path = Path(tmp) / f"line{i:05d}.png"
            Image.fromarray(gray).save(path)
            paths.append(str(path))
        listing = Path(tmp) / "lines.txt"
        listing.write_text("\n".join(paths) + "\n")
        done = subprocess.run(
            ["tesseract", str(listing), "stdout", "-l", langs, "--psm", "7"],
            capture_output=True, text=True, timeout=60 + 10 * len(images),
        )  # fmt: skip
    pages = done.stdout.split("\f")
    texts = ["".join(page.split()) for page in pages[: len(images)]]
    return texts + [""] * (len(images) - len(texts))


def tesseract_reading(images: list[np.ndarray], references: list[str]) -> LineReading:
    start = time.perf_counter()
    texts = tesseract_read(images)
    return LineReading(
        "Tesseract (chi_sim+eng)", texts, character_error_rate(texts, references), time.perf_counter() - start
    )
