"""Report hook for ``skipgram``: held-out losses beside their reference, nearest neighbours, a 2-D map.

The reference is gensim's ``Word2Vec`` trained on the same text with the same settings (text
corpora), or the generating model itself (the synthetic corpus, whose best possible held-out
cross-entropy is its conditional entropy).
"""

from __future__ import annotations

import math

import torch
from matplotlib import font_manager
from matplotlib.figure import Figure

from evaluation.context import EvalContext
from evaluation.report import Report

NEIGHBOURS = 5
QUERY_WORDS = 8
MAP_WORDS = 300
LABELLED = 40


@torch.no_grad()
def held_out_losses(model, pairs: torch.Tensor, batch_size: int, softmax: bool = True) -> dict[str, float]:
    """The test pass's two losses, batch by batch with the same seeded noise words (see ``SkipGram``).

    ``softmax=False`` leaves out the full-softmax cross-entropy, whose N-way normaliser dominates the
    cost for a large vocabulary (pairs × N × n multiply-adds).
    """
    sampled, full = [], []
    for index, start in enumerate(range(0, len(pairs), batch_size)):
        batch = pairs[start : start + batch_size]
        generator = torch.Generator().manual_seed(index)
        sampled.append(model.pair_losses(batch, generator) if model.hparams.loss != "softmax" else None)
        full.append(model.softmax_losses(batch) if softmax or sampled[-1] is None else None)
    soft = torch.cat(full) if full[0] is not None else None
    loss = torch.cat(sampled) if sampled[0] is not None else soft
    return {"loss": float(loss.mean()), "softmax_ce": float(soft.mean()) if soft is not None else math.nan}


def nearest(vectors: torch.Tensor, queries: list[int], k: int = NEIGHBOURS) -> list[list[int]]:
    """The ``k`` nearest words (cosine) of each query word, itself excluded."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    similarity = unit[queries] @ unit.T
    similarity[torch.arange(len(queries)), torch.tensor(queries)] = -math.inf
    return similarity.topk(k, dim=1).indices.tolist()


def _cjk_font() -> str | None:
    for font in font_manager.fontManager.ttflist:
        if any(key in font.name for key in ("Noto Sans CJK", "Noto Serif CJK", "WenQuanYi", "AR PL")):
            return font.name
    return None


def projection_figure(named: dict[str, torch.Tensor], words: list[str]) -> Figure:
    """The first two principal components of the most frequent words' vectors, one panel per model."""
    fig = Figure(figsize=(6 * len(named), 5.5))
    family = _cjk_font()
    for i, (title, vectors) in enumerate(named.items()):
        points = vectors[:MAP_WORDS].float()
        points = points - points.mean(dim=0)
        _, _, v = torch.pca_lowrank(points, q=2, center=False)
        xy = (points @ v[:, :2]).numpy()
        ax = fig.add_subplot(1, len(named), i + 1)
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5)
        for j in range(min(LABELLED, len(xy))):
            ax.annotate(words[j], xy[j], fontsize=7, family=family)
        ax.set(title=f"{title}: {len(xy)} most frequent words, first two principal components")
    fig.tight_layout()
    return fig


def extend_report(report: Report, ctx: EvalContext) -> None:
    model, data = ctx.model.cpu().eval(), ctx.datamodule
    words = data.vocab.words
    test_pairs = data.test_dataloader().dataset.tensors[0]
    rows = [["this run (skipgram)", ctx.metrics.get("test/loss"), ctx.metrics.get("test/softmax_ce"), ""]]
    vectors = {"skipgram": model.centre.weight.detach()}
    if data.truth is not None:
        rows.append(["generating model (best possible)", "", data.truth.conditional_entropy(), "H(context | centre)"])
    else:
        from evaluation.gensim_reference import held_out_comparison, train_gensim

        saved = torch.load(ctx.ckpt_path, map_location="cpu", weights_only=False)
        epochs = int(saved.get("epoch", 0)) + 1  # the epoch the checkpoint was written in, counted from 1
        result = train_gensim(data, model.embedding_dim, epochs, model.hparams.negatives)
        compared = held_out_comparison(model, result, test_pairs, data.batch_size)
        losses = compared["gensim"]
        ratio = ctx.metrics.get("test/loss", math.nan) / losses["loss"]
        rows.append(
            [
                "gensim Word2Vec, same text and settings",
                losses["loss"],
                losses["softmax_ce"],
                f"{epochs} epochs in {result.seconds:.1f} s; skipgram / gensim loss = {ratio:.4f}",
            ]
        )
        vectors["gensim"] = result.centre
    report.add_table(
        "Held-out loss (test pairs)",
        ["model", "negative-sampling loss", "full-softmax cross-entropy (nats)", "note"],
        rows,
        note=f"{len(test_pairs):,} held-out (centre, context) pairs; the negative-sampling loss uses the same seeded "
        f"noise words for every model. Vocabulary N = {len(words):,}, dimension n = {model.embedding_dim}.",
    )
    queries = list(range(min(QUERY_WORDS, len(words))))
    table = []
    for name, vec in vectors.items():
        for q, found in zip(queries, nearest(vec, queries)):
            table.append([name, words[q], ", ".join(words[j] for j in found)])
    report.add_table(
        "Nearest neighbours of the most frequent words (cosine of input vectors)",
        ["model", "word", f"{NEIGHBOURS} nearest"],
        table,
    )
    report.add_figure(
        "embedding_map",
        projection_figure(vectors, words),
        "Embeddings in two dimensions",
        "Principal-component projection of the input vectors; labels on the most frequent words.",
    )
