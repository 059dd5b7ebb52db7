"""Printed characters rendered on the fly: charset × fonts × sizes × noise, 48×48, whole font families held out.

Nothing is stored: sample ``i`` of a split is drawn by :func:`ocr.render.render_glyph` with a seed
made of the split's seed and ``i``, so it is the same image in every epoch, in every data-loader
worker and on every rank. Workers load each (face, size) Pillow font once per process.

Splits:

- ``train``: every (character, face) pair a training face draws × ``sizes`` × ``noise`` × ``copies``.
- ``val``: the training faces again, one sample per (character, face), size and noise level drawn
  by index, other seeds (a check on fitting, not on fonts never seen).
- ``test``: the faces of the held-out design families (``test_families``: by default AR PL UKai,
  Noto Serif CJK SC and, for Latin letters and digits, DejaVu Serif) and of every other font on
  the machine that draws the charset (``other_fonts_test``), every size, ``test_noise``.
  :meth:`GlyphsDataModule.dataset` builds the test split at another noise level.

Faces come from the fonts the suite trains on (:data:`ocr.fonts.TRAINING_FAMILIES`), in the
simplified regional forms (``allow_regions``); a face must draw at least 95 % of the charset
(a character it lacks is simply not drawn with it). :meth:`GlyphsDataModule.line_samples` renders
whole lines of held-out corpus text with the test faces, for evaluating the reading pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import Dataset

from datamodules.base import DataError, SeededLoaders
from ocr.charset import corpus_lines, frequency_ranks, load_charset
from ocr.fonts import SIMPLIFIED_REGIONS, TRAINING_FAMILIES, FontCoverageError, FontFace, coverage, training_faces
from ocr.render import render_glyph, render_line

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def sample_seed(seed: int, split: str, index: int) -> int:
    """The render seed of sample ``index`` of ``split``: distinct across splits and base seeds."""
    return ((seed * 4 + SPLIT_SEEDS[split]) << 40) + index


class GlyphDataset(Dataset):
    """Rendered characters: sample i ↦ (pair, size, noise level, copy) in row-major order.

    ``pairs``: int array (P, 2) of (class index, face index). Items are ``(x, y)``: x float32
    (1, 48, 48) in [0, 1] with ink 1, y int64 class index. ``__getitems__`` returns a batch
    stacked (use ``collate_stacked``).
    """

    def __init__(
        self,
        chars: list[str],
        faces: list[FontFace],
        pairs: np.ndarray,
        sizes: list[int],
        noise: list[float],
        copies: int,
        seed: int,
        split: str,
        draw_by_index: bool = False,
    ) -> None:
        self.chars, self.faces, self.pairs = list(chars), list(faces), np.asarray(pairs, dtype=np.int64)
        self.sizes, self.noise, self.copies = list(sizes), list(noise), int(copies)
        self.seed, self.split, self.draw_by_index = seed, split, draw_by_index

    def __len__(self) -> int:
        per_pair = 1 if self.draw_by_index else len(self.sizes) * len(self.noise) * self.copies
        return len(self.pairs) * per_pair

    def describe(self, index: int) -> tuple[int, FontFace, int, float, int]:
        """(class index, face, size in px, noise share, render seed) of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        seed = sample_seed(self.seed, self.split, index)
        if self.draw_by_index:
            pair = index
            rng = np.random.default_rng(seed)
            size = self.sizes[int(rng.integers(len(self.sizes)))]
            noise = self.noise[int(rng.integers(len(self.noise)))]
        else:
            pair, rest = divmod(index, len(self.sizes) * len(self.noise) * self.copies)
            s, rest = divmod(rest, len(self.noise) * self.copies)
            size, noise = self.sizes[s], self.noise[rest // self.copies]
        k, f = self.pairs[pair]
        return int(k), self.faces[f], int(size), float(noise), seed

    def render(self, index: int) -> tuple[np.ndarray, int]:
        k, face, size, noise, seed = self.describe(index)
        return render_glyph(self.chars[k], face, size, noise, seed), k

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, k = self.render(index)
        return torch.from_numpy(image).float().div_(255).unsqueeze(0), torch.tensor(k, dtype=torch.int64)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rendered = [self.render(i) for i in indices]
        images = torch.from_numpy(np.stack([r[0] for r in rendered])).float().div_(255).unsqueeze(1)
        return images, torch.tensor([r[1] for r in rendered], dtype=torch.int64)


@dataclass(frozen=True)
class LineSample:
    """A rendered line of text: ``image`` uint8 (H, W) dark on white, ``boxes`` the (x0, x1) ink
    columns of each character, ``face`` the font it was drawn with."""

    text: str
    image: np.ndarray
    boxes: list[tuple[int, int]]
    face: FontFace


class GlyphsDataModule(SeededLoaders, LightningDataModule):
    """Rendered printed characters for ``ocr_cnn``.

    Args:
        charset: a charset file (one character per line, most frequent first); None: the default
            charset (3,000 Chinese characters by Jun Da's frequencies, then A–Z a–z 0–9).
        num_chinese: keep this many of the charset's most frequent non-Latin characters (plus all
            62 Latin letters and digits); 500 is the CPU recipe, None or 3000 the full charset.
        sizes: font sizes in pixels (the original: 46–50).
        noise: shares of pixels set to ink in training images, each used for every sample.
        copies: renders per (character, face, size, noise), each with its own jitter.
        test_noise: noise share of the test split.
        test_families: design families held out for testing (a face's family without its region
            suffix, e.g. ``Noto Serif CJK``); prefixes match.
        families: design families trained on (None: every font found on the machine); by default
            those of the Debian font packages (:data:`ocr.fonts.TRAINING_FAMILIES`).
        other_fonts_test: faces of any other family found on the machine join the test split,
            measuring generalisation to fonts never trained on.
        allow_regions: CJK regions whose glyph forms match the labels (None for region-neutral fonts).
        font_dirs: folders to search for fonts (None: the system's and the user's font folders).
        batch_size, num_workers, seed: as in the other data modules; ``seed`` fixes every render.
    """

    input_shape = (1, 48, 48)

    def __init__(
        self,
        charset: str | None = None,
        num_chinese: int | None = 500,
        sizes: tuple[int, ...] = (46, 47, 48, 49, 50),
        noise: tuple[float, ...] = (0.0, 0.05),
        copies: int = 1,
        test_noise: float = 0.05,
        test_families: tuple[str, ...] = ("AR PL UKai", "Noto Serif CJK", "DejaVu Serif"),
        families: tuple[str, ...] | None = TRAINING_FAMILIES,
        other_fonts_test: bool = True,
        allow_regions: tuple[str | None, ...] | None = SIMPLIFIED_REGIONS,
        font_dirs: tuple[str, ...] | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not sizes or min(sizes) < 8:
            raise ValueError(f"sizes must be font sizes of at least 8 px, got {list(sizes)}")
        for share in (*noise, test_noise):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"noise shares lie in [0, 1], got {share}")
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        self.charset = load_charset(charset, size=num_chinese)
        self.num_classes = len(self.charset)
        self.class_names = list(self.charset)
        self.sizes, self.noise, self.copies, self.test_noise = list(sizes), list(noise), copies, test_noise
        # stored as the lists a config file gives
        self.test_families = list(test_families)
        self.families = list(families) if families is not None else None
        self.other_fonts_test = other_fonts_test
        self.allow_regions = list(allow_regions) if allow_regions is not None else None
        self.font_dirs = list(font_dirs) if font_dirs is not None else None
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._faces: tuple[list[FontFace], list[FontFace], np.ndarray, np.ndarray] | None = None
        self.train_set = self.val_set = self.test_set = None

    @property
    def name(self) -> str:
        return "glyphs"

    @property
    def class_frequency_ranks(self) -> list[int]:
        """Frequency rank of each class (0 = most frequent): Jun Da's for Chinese characters, the
        corpus's for Latin letters and digits; characters of a user charset not in the default
        charset rank last, in file order."""
        return frequency_ranks(self.charset)

    def _split_faces(self):
        if self._faces is None:
            from ocr.fonts import discover_fonts

            found = discover_fonts(self.font_dirs) if self.font_dirs is not None else None
            try:
                pool = None if self.other_fonts_test else self.families
                faces = training_faces(self.charset, self.allow_regions, faces=found, families=pool)
            except FontCoverageError as e:
                raise DataError(str(e)) from None
            known = [f for f in faces if self.families is None or f.design_family in self.families]
            held_out = [f for f in known if f.design_family.startswith(tuple(self.test_families))]
            held_out += [f for f in faces if f not in known]
            train = [f for f in known if f not in held_out]
            if not train or not held_out:
                which = "training" if not train else "held-out"
                raise DataError(
                    f"no {which} font faces for this charset: found {[f.name for f in faces]}, "
                    f"held out families {list(self.test_families)}; install the Debian font packages (README), "
                    "or train on the fonts you have with --data.init_args.families null and choose test_families"
                )
            train_cover, test_cover = coverage(train, self.charset), coverage(held_out, self.charset)
            lacking = [c for c, ok in zip(self.charset, train_cover.any(0)) if not ok]
            if lacking:
                raise DataError(f"no training face draws {len(lacking)} characters: {' '.join(lacking[:50])}")
            self._faces = (train, held_out, train_cover, test_cover)
        return self._faces

    @property
    def train_faces(self) -> list[FontFace]:
        return self._split_faces()[0]

    @property
    def test_faces(self) -> list[FontFace]:
        """The faces of the held-out families: no training image is drawn with them."""
        return self._split_faces()[1]

    @staticmethod
    def _pairs(table: np.ndarray) -> np.ndarray:
        """(class, face) index pairs where ``table[face, class]`` holds, class-major."""
        faces, classes = np.nonzero(table)
        order = np.lexsort((faces, classes))
        return np.stack([classes[order], faces[order]], axis=1)

    def dataset(self, split: str, noise: float | None = None) -> GlyphDataset:
        """A split; ``noise`` overrides the test split's noise share (the noise table)."""
        train, held_out, train_cover, test_cover = self._split_faces()
        if split == "train":
            return GlyphDataset(
                self.charset, train, self._pairs(train_cover), self.sizes, self.noise, self.copies, self.seed, "train"
            )
        if split == "val":
            return GlyphDataset(
                self.charset, train, self._pairs(train_cover), self.sizes, self.noise, 1, self.seed, "val", True
            )
        if split == "test":
            share = self.test_noise if noise is None else noise
            return GlyphDataset(
                self.charset, held_out, self._pairs(test_cover), self.sizes, [share], 1, self.seed, "test"
            )
        raise ValueError(f"split is train, val or test, got {split!r}")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = (self.dataset(s) for s in ("train", "val", "test"))

    def text_lines(
        self, n: int = 100, length: int = 10, corpus: str | Path = "people_daily", seed: int = 0
    ) -> list[str]:
        """``n`` pieces of ``length`` consecutive characters of the corpus's held-out lines (never
        counted in the bigram model) made only of charset characters, drawn without overlap by ``seed``."""
        allowed = set(self.charset)
        windows = []
        for line in corpus_lines(corpus, held_out=True):
            run = ""
            for char in line + "\n":
                if char in allowed:
                    run += char
                    continue
                windows += [run[i : i + length] for i in range(0, len(run) - length + 1, length)]
                run = ""
        if len(windows) < n:
            raise DataError(
                f"the held-out text of {corpus} has only {len(windows)} runs of {length} charset characters"
            )
        picks = np.random.default_rng(seed).choice(len(windows), size=n, replace=False)
        return [windows[i] for i in sorted(picks)]

    def line_samples(
        self,
        n: int = 100,
        length: int = 10,
        height_px: int = 48,
        spacing_px: int = 4,
        seed: int = 0,
        corpus="people_daily",
    ) -> list[LineSample]:
        """Held-out text lines (:meth:`text_lines`) rendered with the held-out faces in turn; lines a
        face cannot fully draw go to the next face that can."""
        train, held_out, _, test_cover = self._split_faces()
        index = {c: i for i, c in enumerate(self.charset)}
        samples = []
        for i, text in enumerate(self.text_lines(n, length, corpus, seed)):
            columns = [index[c] for c in text]
            usable = [f for f in range(len(held_out)) if test_cover[f, columns].all()]
            if not usable:
                continue
            face = held_out[usable[i % len(usable)]]
            image, boxes = render_line(text, face, height_px, spacing_px, seed=seed * 100_003 + i)
            samples.append(LineSample(text, image, boxes, face))
        return samples
