"""Read printed text lines: cut, classify each cut with the CNN, decode with the bigram model.

python -m ocr read line.png [more.png ...] --ckpt runs/<run>/checkpoints/last.ckpt [--no-lm] [--spec-cuts]

Cutting is SPEC §1's column-projection rule, then a second look at each box the rule built from
several ink runs: every grouping of the runs is read by the CNN and the grouping with the highest
joint probability is kept (:func:`ocr.segment.best_partition`), so digits and Latin letters,
narrower than a line height and glued in pairs by the rule, are read one by one, while 川 or 们
stay whole. ``--spec-cuts`` reads SPEC's boxes as they are.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocr.segment import best_partition, cut_line, ink_mask, ink_runs
from ocr.viterbi import Candidates, viterbi

MODEL_CLASS_PATH = "lit_modules.ocr_cnn.OCRCNN"
TOP_K = 3
MAX_RUNS = 8  # a box of more ink runs than this is read whole (its groupings grow as runs²)


class ReadError(RuntimeError):
    """Something a user can fix (a file that is not an image, a wrong checkpoint), said in one line."""


def load_gray(path: Path | str) -> np.ndarray:
    """A PNG/JPEG (any mode, any size) as a ``(H, W)`` uint8 grey image; transparent pixels become white."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img.convert("RGBA"))
            gray = np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ReadError(f"{path}: not an image Pillow can read ({type(err).__name__})") from None
    if gray.size == 0:
        raise ReadError(f"{path}: the image is empty (0 pixels)")
    return gray


def glyph_batch(gray: np.ndarray, boxes: list[tuple[int, int]]) -> np.ndarray:
    """The cut characters preprocessed as in training: ink high, cropped, squared, 48×48 in [0, 1].

    Shape:
        - gray: ``(H, W)``
        - output: ``(len(boxes), 1, 48, 48)`` float32
    """
    from ocr.render import normalize_crop

    ink = ink_mask(gray).astype(np.uint8) * 255
    crops = [normalize_crop(ink[:, x0:x1]) for x0, x1 in boxes]
    return np.stack(crops)[:, None].astype(np.float32) if crops else np.zeros((0, 1, 48, 48), np.float32)


@dataclass
class Reader:
    """A trained ``ocr_cnn`` with its charset, and optionally a language model."""

    model: object
    charset: list[str]
    lm: object | None = None
    top_k: int = TOP_K
    refine_cuts: bool = True

    @classmethod
    def from_checkpoint(
        cls, ckpt: Path | str, lm: object | None = None, top_k: int = TOP_K, refine_cuts: bool = True
    ) -> Reader:
        """Load an ``ocr_cnn`` checkpoint written by ``train.py``; anything else is a :class:`ReadError`."""
        from litsuite.checkpoint_io import checkpoint_problem

        if problem := checkpoint_problem(Path(ckpt), MODEL_CLASS_PATH):
            raise ReadError(problem.replace("this run trains", "the reader needs"))
        from lit_modules.ocr_cnn import OCRCNN

        try:
            model = OCRCNN.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
        except Exception as err:  # a Lightning checkpoint of no registered model, or damaged weights
            raise ReadError(f"{ckpt}: not an ocr_cnn checkpoint ({type(err).__name__})") from None
        if not model.charset:
            raise ReadError(f"{ckpt}: the checkpoint holds no charset (train it with the glyphs data)")
        return cls(model.eval(), model.charset, lm, top_k, refine_cuts)

    def probabilities(self, glyphs: np.ndarray):
        """The CNN's class probabilities ``(N, C)`` of preprocessed glyphs ``(N, 1, 48, 48)``."""
        import torch

        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(glyphs)).float(), dim=1)

    def candidates(self, glyphs: np.ndarray) -> Candidates:
        """The CNN's top-k characters and probabilities for each glyph."""
        if len(glyphs) == 0:
            return []
        probs = self.probabilities(glyphs)
        top = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        return [
            [(self.charset[j], float(p)) for p, j in zip(ps, js)]
            for ps, js in zip(top.values.tolist(), top.indices.tolist())
        ]

    def cut(self, gray: np.ndarray) -> list[tuple[int, int]]:
        """The character boxes of a line: SPEC's cuts, each box of several ink runs regrouped by the CNN.

        For a box of runs ``r_0 .. r_{m-1}`` every crop spanning runs ``i..j-1`` is read (one batch
        for the whole line) and :func:`ocr.segment.best_partition` picks the grouping with the
        highest product of top-1 probabilities; the box read whole is one of the groupings.
        """
        boxes = cut_line(gray)
        if not self.refine_cuts:
            return boxes
        mask = ink_mask(gray)
        runs = [ink_runs(mask, box) for box in boxes]
        spans = [
            (b, i, j, (r[i][0], r[j - 1][1]))
            for b, r in enumerate(runs)
            if 1 < len(r) <= MAX_RUNS
            for i in range(len(r))
            for j in range(i + 1, len(r) + 1)
        ]
        if not spans:
            return boxes
        top1 = self.probabilities(glyph_batch(gray, [span for *_, span in spans])).max(dim=1).values
        log_prob: dict[int, dict[tuple[int, int], float]] = {}
        for (b, i, j, _), p in zip(spans, top1.clamp_min(1e-12).log().tolist()):
            log_prob.setdefault(b, {})[(i, j)] = p
        refined = []
        for b, box in enumerate(boxes):
            if b not in log_prob:
                refined.append(box)
                continue
            r = runs[b]
            refined += [(r[i][0], r[j - 1][1]) for i, j in best_partition(log_prob[b], len(r))]
        return refined

    def read_gray(self, gray: np.ndarray) -> str:
        """The text of one line image; a :class:`ReadError` if it shows no text at all."""
        boxes = self.cut(gray)
        if not boxes:
            raise ReadError("no text found: the image is blank or has too little contrast")
        return viterbi(self.candidates(glyph_batch(gray, boxes)), self.lm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ocr read", description="Print the text of printed line images.")
    parser.add_argument("images", nargs="+", type=Path, help="PNG/JPEG line images, dark on light or the reverse")
    parser.add_argument("--ckpt", required=True, type=Path, help="an ocr_cnn checkpoint written by train.py")
    parser.add_argument("--no-lm", action="store_true", help="take each cut's best CNN candidate, no language model")
    parser.add_argument(
        "--bigrams", type=Path, default=None, help="bigrams.tsv of your own corpus (python -m ocr build-data)"
    )
    parser.add_argument("--top-k", type=int, default=TOP_K, help="CNN candidates per cut for the decoder")
    parser.add_argument(
        "--spec-cuts", action="store_true", help="read SPEC's projection cuts as they are (no regrouping of ink runs)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print one line of text per image (prefixed with the file name when there are several)."""
    args = build_parser().parse_args(argv)
    try:
        reader = Reader.from_checkpoint(args.ckpt, top_k=args.top_k, refine_cuts=not args.spec_cuts)
        if not args.no_lm:
            from ocr.bigram import BigramLM

            try:
                reader.lm = BigramLM.load(args.bigrams)
            except (OSError, ValueError, RuntimeError) as err:  # a missing or malformed bigrams.tsv
                raise ReadError(f"language model: {err} (or read with --no-lm)") from None
        for path in args.images:
            gray = load_gray(path)
            try:
                text = reader.read_gray(gray)
            except ReadError as err:
                raise ReadError(f"{path}: {err}") from None
            print(f"{path}\t{text}" if len(args.images) > 1 else text)
    except ReadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
