"""Report hook for ``ocr_cnn``: held-out font families, noise, reading whole lines, confusions, losses.

Sections (each on the held-out font families of the glyphs data, never drawn in training):

- top-1 / top-3 accuracy per held-out family and overall;
- top-1 / top-3 at 0 %, 5 % and 15 % noise (the same characters, faces and sizes at each level);
- character error rate on rendered lines of held-out corpus text: cutting + CNN alone, with the
  bigram language model (Viterbi over the top-3), and Tesseract on the same images;
- the most-confused character pairs, with their glyphs as the network saw them;
- the three losses compared, from the other ``ocr_cnn`` runs under ``runs/`` on the same data.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from matplotlib.figure import Figure

from evaluation.context import EvalContext
from evaluation.ocr_lines import read_with, tesseract_available, tesseract_reading
from evaluation.report import Report
from evaluation.stats import percent_with_ci

NOISE_LEVELS = (0.0, 0.05, 0.15)
MAX_GLYPHS = 1500  # per noise level: a fixed random subset of the held-out split (Wilson intervals say how sure)
LINES, LINE_LENGTH = 400, 10  # 4,000 characters: Tesseract makes about one error in a hundred
EXAMPLE_LINES = 12
CONFUSED_PAIRS = 12
BATCH = 512


@torch.no_grad()
def top_k_predictions(
    model, dataset, indices: np.ndarray, k: int = 3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top-k class indices (N, k), labels (N,), images (N, 1, 48, 48))`` of the chosen samples."""
    model.eval()
    device = next(model.parameters()).device
    tops, labels, images = [], [], []
    for start in range(0, len(indices), BATCH):
        x, y = dataset.__getitems__([int(i) for i in indices[start : start + BATCH]])
        tops.append(model(x.to(device)).topk(k, dim=1).indices.cpu())
        labels.append(y)
        images.append(x)
    return torch.cat(tops), torch.cat(labels), torch.cat(images)


def sample_indices(n: int, limit: int = MAX_GLYPHS, seed: int = 0) -> np.ndarray:
    """All of ``range(n)`` or a sorted random subset of ``limit``, the same for every noise level."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _accuracy_cells(top: torch.Tensor, labels: torch.Tensor) -> list:
    n = len(labels)
    top1 = float((top[:, 0] == labels).float().mean()) if n else float("nan")
    top3 = float((top == labels[:, None]).any(dim=1).float().mean()) if n else float("nan")
    return [n, top1, top3, percent_with_ci(top1, n)]


def add_family_and_noise_tables(report: Report, ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-family table (at the test split's noise) and the noise table; returns the 5 % predictions."""
    dm = ctx.datamodule
    per_noise = {}
    for noise in NOISE_LEVELS:
        dataset = dm.dataset("test", noise=noise)
        indices = sample_indices(len(dataset))
        per_noise[noise] = (dataset, indices, *top_k_predictions(ctx.model, dataset, indices))
    rows = []
    for noise, (_, _, top, labels, _) in per_noise.items():
        rows.append([f"{100 * noise:.0f} %", *_accuracy_cells(top, labels)])
        ctx.results[f"ocr/top1_noise{round(100 * noise)}"] = rows[-1][2]
        ctx.result_sizes[f"ocr/top1_noise{round(100 * noise)}"] = rows[-1][1]
    report.add_table(
        "Accuracy on the held-out font families against noise",
        ["noise (share of pixels set to ink)", "glyphs", "top-1", "top-3", "top-1, 95 % interval"],
        rows,
        note=f"Held-out families: {', '.join(sorted({f.design_family for f in dm.test_faces}))}; every size; "
        f"the same {len(per_noise[NOISE_LEVELS[0]][1])} (character, face, size) samples at each noise level. "
        "SPEC §1's published figures: 92.11 % on 5 held-out fonts, 87.59 % with 15 % noise.",
    )
    dataset, indices, top, labels, images = per_noise[0.05]
    families = [dataset.describe(int(i))[1].design_family for i in indices]
    rows = []
    for family in sorted(set(families)):
        mask = torch.tensor([f == family for f in families])
        rows.append([family, *_accuracy_cells(top[mask], labels[mask])])
    rows.append(["all", *_accuracy_cells(top, labels)])
    ctx.results["ocr/top3"] = rows[-1][3]
    ctx.result_sizes["ocr/top3"] = rows[-1][1]
    if rows[:-1]:
        ctx.results["ocr/best_family_top1"] = max(r[2] for r in rows[:-1])
    report.add_table(
        "Top-1 and top-3 accuracy per held-out font family (5 % noise)",
        ["family", "glyphs", "top-1", "top-3", "top-1, 95 % interval"],
        rows,
        note="No glyph of these families was drawn in training.",
    )
    return top, labels, images


def confused_pairs_figure(pairs: list[tuple[tuple[int, int], int]], examples: dict, names: list[str]) -> Figure:
    """Each confused pair: a held-out glyph of the true character beside one of what it was taken for."""
    fig = Figure(figsize=(2.2 * 2, 1.2 * len(pairs) + 0.4))
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    for row, ((true, pred), count) in enumerate(pairs):
        for col, (cls, label) in enumerate(((true, "true"), (pred, "read as"))):
            ax = axes[row][col]
            image = examples.get(cls)
            ax.imshow(image if image is not None else np.zeros((48, 48)), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"{label} U+{ord(names[cls]):04X} ({count}×)" if col else f"{label} U+{ord(names[cls]):04X}",
                         fontsize=7)  # fmt: skip
            ax.axis("off")
    return fig


def add_confused_pairs(report: Report, ctx: EvalContext, top, labels, images) -> None:
    names = list(ctx.datamodule.charset)
    wrong = top[:, 0] != labels
    counts = Counter(zip(labels[wrong].tolist(), top[wrong, 0].tolist())).most_common(CONFUSED_PAIRS)
    if not counts:
        report.add_note("No held-out glyph of the sample was misread: no confused pairs to show.")
        return
    examples = {}
    for i, cls in enumerate(labels.tolist()):
        examples.setdefault(cls, images[i, 0].numpy())
    report.add_table(
        "Most-confused character pairs (held-out families, 5 % noise)",
        ["true", "read as", "times", "true class rank"],
        [[names[t], names[p], c, t] for (t, p), c in counts],
        note="Glyphs of both characters, as the network saw them, in the figure below.",
    )
    report.add_figure("confused_pairs", confused_pairs_figure(counts, examples, names), "Most-confused pairs",
                      "Left: a held-out glyph of the true character; right: a glyph of the character it was read as "
                      "(from the same held-out sample, blank when that character had none).")  # fmt: skip


def add_line_reading(report: Report, ctx: EvalContext) -> None:
    """CER of SPEC's cuts + CNN, of cuts regrouped by the CNN (alone and + language model), and of
    Tesseract, all on the same rendered lines."""
    from ocr.bigram import BigramLM
    from ocr.read import Reader

    samples = ctx.datamodule.line_samples(LINES, LINE_LENGTH)
    images, references = [s.image for s in samples], [s.text for s in samples]
    charset = list(ctx.datamodule.charset)
    spec = Reader(ctx.model.eval(), charset, refine_cuts=False)
    reader = Reader(ctx.model.eval(), charset)
    readings = [
        read_with("SPEC cuts + CNN (top-1)", spec.read_gray, images, references),
        read_with("cuts regrouped by the CNN + CNN (top-1)", reader.read_gray, images, references),
    ]
    reader.lm = BigramLM.load()
    readings.append(read_with("regrouped cuts + CNN + bigram model (Viterbi, top-3)", reader.read_gray, images,
                              references))  # fmt: skip
    missing = tesseract_available()
    if missing is None:
        readings.append(tesseract_reading(images, references))
    rows = [[r.name, r.cer, len(images) / r.seconds if r.seconds else float("nan")] for r in readings]
    for key, reading in zip(("ocr/cer_spec_cuts", "ocr/cer_cnn", "ocr/cer_lm", "ocr/cer_tesseract"), readings):
        ctx.results[key] = reading.cer
    report.add_table(
        "Character error rate on rendered lines (held-out text and font families)",
        ["reader", "CER", "lines per second"],
        rows,
        note=f"{len(images)} lines of {LINE_LENGTH} characters from held-out corpus lines (never counted in the "
        "bigram model), drawn by the data module's line renderer with the held-out faces (font size 36 px in "
        "48-px lines). SPEC's projection rule glues digits and Latin letters, narrower than a line height, in "
        "pairs; the regrouped cuts read each box made of several ink runs in every grouping and keep the most "
        "probable (python -m ocr read; --spec-cuts for SPEC's boxes). CER = edit distance / reference "
        "characters (torchmetrics). "
        + (f"Tesseract not run: {missing}." if missing else "Tesseract: --psm 7, whitespace removed."),
    )
    shown = [i for i, ref in enumerate(references) if any(r.texts[i] != ref for r in readings)][:EXAMPLE_LINES]
    examples = [[references[i], *(r.texts[i] for r in readings)] for i in shown]
    if examples:
        note = f"The first {len(examples)} lines on which at least one reader made an error."
        report.add_table("Lines some reader got wrong", ["reference", *(r.name for r in readings)], examples, note=note)


def add_losses_compared(report: Report, ctx: EvalContext) -> None:
    """Held-out top-1/top-3 of the newest ``ocr_cnn`` run with each loss on this run's charset."""
    from evaluation.ocr_losses import runs_by_loss

    found = runs_by_loss(ctx)
    if len(found) < 2:
        report.add_note(
            "Losses compared: train ocr_cnn with --model.loss smoothed_cross_entropy and --model.loss center "
            "as well (same data settings) and evaluate again to get the three losses side by side."
        )
        return
    dataset = ctx.datamodule.dataset("test")
    indices = sample_indices(len(dataset))
    rows = []
    for loss, (run, model, steps) in sorted(found.items()):
        top, labels, _ = top_k_predictions(model, dataset, indices)
        rows.append([loss, run.name, steps, *_accuracy_cells(top, labels)])
    report.add_table(
        "The three losses compared (held-out families, test noise)",
        ["loss", "run", "steps trained", "glyphs", "top-1", "top-3", "top-1, 95 % interval"],
        rows,
        note="The newest run of each loss with this run's data settings; same held-out sample for all. "
        "Runs with different numbers of steps are not a like-for-like comparison: read the steps column.",
    )


def extend_report(report: Report, ctx: EvalContext) -> None:
    top, labels, images = add_family_and_noise_tables(report, ctx)
    add_confused_pairs(report, ctx, top, labels, images)
    add_line_reading(report, ctx)
    add_losses_compared(report, ctx)
