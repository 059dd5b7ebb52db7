"""Does on-the-fly rendering keep up with training? Glyphs rendered per second per worker beside the
OCR CNN's training throughput, measured in one run.

Run from the repository root::

    python -m benchmarks.bench_glyphs            # 562 and 3,062 classes, 0/1/2 loader workers
    python -m benchmarks.bench_glyphs --quick    # small, for a smoke test

Rendering: samples of the ``glyphs`` training split in a fixed random order (so fonts, sizes and
characters mix as in training), rendered by ``GlyphDataset`` in the main process; the figure is
glyphs per second of one process. Loader: ``GlyphsDataModule.train_dataloader()`` batches of 256
with 0, 1 and 2 worker processes (the first batch, which starts the workers, is not timed).
Training: one optimiser step (forward, cross-entropy, backward, Adam) of ``ocr_cnn`` on random
48×48 batches of 256, median of several steps, with the torch threads the machine gives.
The ratio training / rendering says how many rendering workers one training process needs. Setup
(charset, font discovery, coverage of every face) is timed twice: in an empty cache folder, then
again with the cache it filled.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import machine_description

GPU_RATE = 20_000  # samples/s, an assumption for the worker count, not a measurement


def render_rate(dataset, n: int, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    dataset.render(int(order[0]))  # fonts load once per process: not part of the steady rate
    start = time.perf_counter()
    for i in order:
        dataset.render(int(i))
    return n / (time.perf_counter() - start)


def loader_rate(data, workers: int, batches: int) -> float:
    data.num_workers = workers
    loader = data.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        seen += len(next(iterator)[1])
    rate = seen / (time.perf_counter() - start)
    del iterator, loader
    return rate


def training_rate(num_classes: int, steps: int, batch: int = 256) -> float | None:
    """Samples per second of ``ocr_cnn`` training steps on random inputs (None without the model)."""
    try:
        from lit_modules.ocr_cnn import OCRCNN
    except ImportError:
        return None
    model = OCRCNN(num_classes=num_classes)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 48, 48)
    y = torch.randint(0, num_classes, (batch,))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/glyphs.md")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from datamodules.glyphs import GlyphsDataModule

    n_render, batches, steps = (300, 3, 3) if args.quick else (3000, 20, 10)
    worker_counts = (0, 1) if args.quick else (0, 1, 2)
    rows = []
    previous = os.environ.get("LITSUITE_CACHE")
    for num_chinese in (500,) if args.quick else (500, 3000):
        setup_s = []
        with tempfile.TemporaryDirectory() as cache:  # cold: charset built, every face's coverage checked
            os.environ["LITSUITE_CACHE"] = cache
            for _ in range(2):  # then warm: read from the cache
                started = time.perf_counter()
                data = GlyphsDataModule(num_chinese=num_chinese, batch_size=256)
                data.setup()
                setup_s.append(time.perf_counter() - started)
        os.environ.pop("LITSUITE_CACHE")
        if previous is not None:
            os.environ["LITSUITE_CACHE"] = previous
        per_worker = render_rate(data.train_set, n_render)
        loaders = {w: loader_rate(data, w, batches) for w in worker_counts}
        train = training_rate(data.num_classes, steps)
        rows.append((data.num_classes, len(data.train_set), setup_s, per_worker, loaders, train))
        print(rows[-1], flush=True)

    lines = [
        "## OCR glyph rendering against training (`benchmarks/bench_glyphs.py`)",
        "",
        f"Machine: {machine_description()}; torch threads: {torch.get_num_threads()}; "
        f"load average at the end {os.getloadavg()[0]:.1f}. "
        "Rendering and training measured one after the other in the same run; the machine may be shared, "
        "so compare the ratios.",
        "",
        "| classes | training samples/epoch | setup s, cold / cached | glyphs/s, one worker | "
        + " | ".join(f"loader samples/s, {w} workers" for w in worker_counts)
        + " | ocr_cnn training samples/s (batch 256) | workers needed to feed it |",
        "|---|---|---|---|" + "---|" * len(worker_counts) + "---|---|",
    ]
    for classes, size, setup_s, per_worker, loaders, train in rows:
        train_cell = f"{train:,.0f}" if train else "— (lit_modules.ocr_cnn missing)"
        need = f"{train / per_worker:.2f}" if train else "—"
        loader_cells = " | ".join(f"{loaders[w]:,.0f}" for w in worker_counts)
        lines.append(
            f"| {classes:,} | {size:,} | {setup_s[0]:.1f} / {setup_s[1]:.1f} | {per_worker:,.0f} | {loader_cells} "
            f"| {train_cell} | {need} |"
        )
    slowest = min(row[3] for row in rows)
    lines += [
        "",
        f"No GPU here. A GPU training at R samples/s needs R / (glyphs/s per worker) rendering workers: "
        f"at an assumed {GPU_RATE:,} samples/s (not measured) and the slowest rate above, "
        f"{math.ceil(GPU_RATE / slowest)} workers.",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
