"""Report hook for ``linear_ae``: error ratio and largest principal angle versus k."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from evaluation.context import EvalContext
from evaluation.report import Report


def extend_report(report: Report, ctx: EvalContext) -> None:
    model = ctx.model
    ks = list(model.ks)
    ratios = [ctx.metrics.get(f"test/error_ratio_k{k}", math.nan) for k in ks]
    angles = [ctx.metrics.get(f"test/max_angle_deg_k{k}", math.nan) for k in ks]
    report.add_table(
        "Autoencoder versus truncated SVD (test split)",
        ["k", "AE error / SVD error", "largest principal angle (°)", "spectral gap σ_k²/σ_{k+1}²"],
        [[k, r, a, model.spectral_gap(k)] for k, r, a in zip(ks, ratios, angles)],
        note="SVD: top-k right singular vectors of the training matrix "
        f"({model.hparams.svd_method}); the angle is between span(decoderᵀ) and that subspace. "
        "Eckart–Young: the ratio cannot go below 1 on the training data, and tends to 1 as the AE converges. "
        "The angle converges at a rate set by the spectral gap: where σ_k ≈ σ_{k+1} the loss barely depends on "
        "which of the two directions the AE keeps, so a small error ratio can coexist with a large angle. "
        f"Optimiser: {model.hparams.optimizer} (Gauss–Newton resolves near-ties in a few epochs; first-order "
        "methods need a number of steps ∝ σ_1² / (σ_k² − σ_{k+1}²)).",
    )
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.plot(ks, ratios, "o-")
    left.axhline(1.0, color="grey", ls="--", lw=1)
    left.set(xlabel="k", ylabel="AE error / SVD error", title="Reconstruction error ratio (test)")
    left.ticklabel_format(axis="y", useOffset=False)
    right.plot(ks, angles, "o-", color="tab:red")
    right.set(xlabel="k", ylabel="degrees", title="Largest principal angle")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.grid(alpha=0.3)
    fig.tight_layout()
    report.add_figure("ae_vs_svd", fig, "Linear autoencoder versus SVD, by code size k")
