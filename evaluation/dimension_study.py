"""Where does a word embedding's capacity saturate? Train ``skipgram`` at several dimensions for several
vocabulary sizes and plot held-out loss against dimension, with the n > 8.33·ln N rule marked.

    python -m evaluation.dimension_study                                   # synthetic corpora (known n*)
    python -m evaluation.dimension_study --corpus people_daily --loss negative_sampling --sizes 1000 5000
    python -m evaluation.dimension_study --dims 2 4 8 16 32 64 --epochs 3 --out reports/dimension_study

Each (N, n) is one ordinary run (``python train.py --model skipgram ...``) under ``<out>/runs/``;
the study reads each run's best validation loss from its ``metrics.csv`` (the full-softmax
cross-entropy with ``--loss softmax``, the negative-sampling loss with fixed noise words otherwise)
and writes
``<out>/report.md`` (+ ``.html``) with the table and the figure. A curve "flattens" at the
smallest n whose loss is within ``--tolerance`` (relative) of the curve's lowest loss.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from matplotlib.figure import Figure

from evaluation.curves import read_metrics_csv
from evaluation.report import Report
from lit_modules.components.embedding_dimension import min_embedding_dim

METRICS = {"softmax": "val/softmax_ce", "negative_sampling": "val/loss"}


def flattening_dim(dims: list[int], losses: list[float], tolerance: float) -> int:
    """The smallest dimension whose loss is within ``tolerance`` (relative) of the lowest loss."""
    best = min(losses)
    return next(d for d, loss in zip(dims, losses) if loss <= best * (1 + tolerance))


def train_one(out: Path, corpus: str, loss: str, size: int, dim: int, epochs: int, extra: list[str]) -> float:
    """Train one (N, n) run; return its lowest validation loss (``METRICS[loss]``)."""
    from litsuite.frontend import main as train

    os.environ["LITSUITE_RUNS_DIR"] = str(out / "runs")
    os.environ.pop("LITSUITE_RUN_DIR", None)
    before = set((out / "runs").glob("*")) if (out / "runs").is_dir() else set()
    args = [
        "--model",
        "skipgram",
        "--logger",
        "csv",
        "--data.init_args.corpus",
        corpus,
        "--data.init_args.num_words",
        str(size),
        "--model.loss",
        loss,
        "--model.embedding_dim",
        str(dim),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    if train(args) != 0:
        raise RuntimeError(f"training N = {size}, n = {dim} failed (see above)")
    (run,) = set((out / "runs").glob("*")) - before
    values = [v for _, v in read_metrics_csv(run / "metrics.csv").get(METRICS[loss], [])]
    if not values:
        raise RuntimeError(f"{run}: no {METRICS[loss]} logged")
    return min(values)


def figure(results: dict[int, dict[int, float]], tolerance: float, ylabel: str) -> Figure:
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for size, by_dim in sorted(results.items()):
        dims = sorted(by_dim)
        (line,) = ax.plot(dims, [by_dim[d] for d in dims], "o-", label=f"N = {size:,}")
        ax.axvline(min_embedding_dim(size), color=line.get_color(), ls="--", lw=1)
        flat = flattening_dim(dims, [by_dim[d] for d in dims], tolerance)
        ax.plot([flat], [by_dim[flat]], "s", color=line.get_color(), ms=10, mfc="none")
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="embedding dimension n",
        ylabel=ylabel,
        title="Held-out loss against dimension (dashed: the rule's n; square: where it flattens)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.dimension_study", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="synthetic", help="synthetic (default), people_daily, reviews or a path")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000], help="vocabulary sizes N")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128], help="dimensions n")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--loss",
        choices=sorted(METRICS),
        default="softmax",
        help="softmax (default: held-out log-likelihood) or negative_sampling (held-out NS loss)",
    )
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative loss gap that counts as flat")
    parser.add_argument("--out", default="reports/dimension_study")
    ns, extra = parser.parse_known_args(argv)
    if min(ns.sizes) < 2 or min(ns.dims) < 1 or ns.epochs < 1:
        parser.error("sizes must be at least 2, dims and epochs at least 1")
    out = Path(ns.out)
    metric = METRICS[ns.loss]
    results: dict[int, dict[int, float]] = {}
    for size in ns.sizes:
        for dim in ns.dims:
            results.setdefault(size, {})[dim] = train_one(out, ns.corpus, ns.loss, size, dim, ns.epochs, extra)
            print(f"N = {size}, n = {dim}: {metric} {results[size][dim]:.4f}", flush=True)
    report = Report(f"Embedding dimension study ({ns.corpus})", out)
    report.facts = {
        "corpus": ns.corpus,
        "loss": ns.loss,
        "epochs per run": str(ns.epochs),
        "metric": f"lowest {metric} of each run",
        "other options": " ".join(extra) or "none",
    }
    rows = []
    for size, by_dim in sorted(results.items()):
        dims = sorted(by_dim)
        flat = flattening_dim(dims, [by_dim[d] for d in dims], ns.tolerance)
        rows.append([size, min_embedding_dim(size), round(8.33 * math.log(size), 1), flat] + [by_dim[d] for d in dims])
    report.add_table(
        f"Held-out {metric} by vocabulary size N and dimension n",
        ["N", "rule's n", "8.33·ln N", "flattens at n"] + [f"n = {d}" for d in sorted(ns.dims)],
        rows,
        note=f"'flattens at': the smallest n within {ns.tolerance:.0%} of the row's lowest loss.",
    )
    plot = figure(results, ns.tolerance, f"held-out {metric} (nats)")
    report.add_figure("loss_vs_dimension", plot, "Held-out loss against dimension")
    md, _ = report.write()
    print(f"report: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
