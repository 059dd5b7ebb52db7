"""Lines read per second by ``python -m ocr read``, and where the time goes.

Run from the repository root::

    python -m benchmarks.bench_ocr_read                    # 200 lines of 10 characters
    python -m benchmarks.bench_ocr_read --ckpt CKPT        # a trained ocr_cnn (speed does not depend on the weights)
    python -m benchmarks.bench_ocr_read --quick            # 20 lines, for a smoke test

Lines: held-out corpus text drawn by ``GlyphsDataModule.line_samples`` with the held-out faces
(48-px lines, 36-px font), saved as PNG. In one process, each stage over all lines: decoding the
PNG, SPEC's cutting (:func:`ocr.segment.cut_line`), the reader's regrouping of boxes made of
several ink runs (``Reader.cut``: SPEC's cuts, then the CNN reads every grouping), preprocessing
the cuts (``normalize_crop``), the CNN's top-3 (one batch per line, as the reader does), and
Viterbi over the bigram model; then the whole reader with and without the language model. Last,
the command itself, ``python -m ocr read`` on all the files at once, wall time including the
start of Python and torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from benchmarks.machine import machine_description


def timed(fn, items) -> tuple[list, float]:
    start = time.perf_counter()
    out = [fn(item) for item in items]
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--ckpt", default=None, help="an ocr_cnn checkpoint (default: an untrained one, same size)")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 20 if args.quick else args.lines

    import torch

    from datamodules.glyphs import GlyphsDataModule
    from lit_modules.ocr_cnn import OCRCNN
    from ocr.bigram import BigramLM
    from ocr.read import Reader, glyph_batch, load_gray
    from ocr.segment import cut_line
    from ocr.viterbi import viterbi

    data = GlyphsDataModule()
    samples = data.line_samples(n, 10)
    tmp = Path(tempfile.mkdtemp())
    paths = []
    for i, sample in enumerate(samples):
        paths.append(tmp / f"line{i:04d}.png")
        Image.fromarray(sample.image).save(paths[-1])
    lm = BigramLM.load()
    if args.ckpt:
        reader = Reader.from_checkpoint(args.ckpt, lm)
    else:
        model = OCRCNN(num_classes=data.num_classes, class_names=list(data.charset), channels=(32, 32))
        reader = Reader(model.eval(), list(data.charset), lm)

    grays, t_load = timed(load_gray, paths)
    _, t_cut = timed(cut_line, grays)
    boxes, t_regroup = timed(reader.cut, grays)
    glyphs, t_prep = timed(lambda gb: glyph_batch(*gb), list(zip(grays, boxes)))
    with torch.no_grad():
        lattices, t_cnn = timed(reader.candidates, glyphs)
    _, t_viterbi = timed(lambda lattice: viterbi(lattice, lm), lattices)
    reader.lm = None
    _, t_no_lm = timed(lambda p: reader.read_gray(load_gray(p)), paths)
    reader.lm = lm
    _, t_lm = timed(lambda p: reader.read_gray(load_gray(p)), paths)
    t_cli = None
    if args.ckpt:  # the command needs a checkpoint file
        start = time.perf_counter()
        command = [sys.executable, "-m", "ocr", "read", *map(str, paths), "--ckpt", args.ckpt]
        done = subprocess.run(command, capture_output=True, text=True)
        t_cli = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr)

    rows = [
        ("decode PNG", t_load), ("SPEC's cuts", t_cut),
        ("regrouped cuts (SPEC's, then the CNN on multi-run boxes)", t_regroup), ("preprocess the cuts", t_prep),
        ("CNN top-3", t_cnn), ("Viterbi + bigram model", t_viterbi),
        ("reader without the language model", t_no_lm), ("reader with the language model", t_lm),
    ]  # fmt: skip
    if t_cli is not None:
        rows.append(("`python -m ocr read` on all files (one process, with start-up)", t_cli))
    chars = sum(len(s.text) for s in samples)
    lines = [
        "## Reading lines (`python -m ocr read`)",
        "",
        f"{n} lines, {chars} characters (10 per line), 48 px high, drawn with the held-out faces; "
        f"{data.num_classes} classes; {'checkpoint ' + args.ckpt if args.ckpt else 'an untrained CPU-recipe ocr_cnn'}. "
        f"Machine: {machine_description()}.",
        "",
        "| stage | seconds | lines per second | ms per line |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {t:.2f} | {n / t:.1f} | {1000 * t / n:.1f} |" for name, t in rows]
    lines += [
        "",
        "Timings on a shared machine while other work ran: compare the rows with each other, not with another run.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
