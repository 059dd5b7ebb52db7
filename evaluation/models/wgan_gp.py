"""Report hook for ``wgan_gp``: FID beside its real-vs-real floor, curves, samples across training, interpolations,
and for 2-D data the generated points over the modes with their coverage."""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from PIL import Image

from evaluation.context import EvalContext
from evaluation.curves import read_metrics_csv
from evaluation.fid import real_vs_real_fid
from evaluation.gan_figures import image_grid, interpolation_latents, points_figure
from evaluation.report import Report


def _test_samples(ctx: EvalContext) -> torch.Tensor:
    batches = ctx.datamodule.test_dataloader()
    return torch.cat([batch[0] if isinstance(batch, (tuple, list)) else batch for batch in batches])


def _fid_table(report: Report, ctx: EvalContext, series: dict) -> None:
    model = ctx.model
    real = _test_samples(ctx).to(model.device)
    half = len(real) // 2
    floor = real_vs_real_fid(model.fid, real)
    rows = [["generated vs test (first half)", ctx.metrics.get("test/fid", math.nan), half],
            ["real vs real: test first half vs second half (floor)", floor, half]]
    fid = [v for _, v in series.get("val/fid", [])]
    if fid:
        rows.append([f"validation, first evaluation → last ({len(fid)} evaluations)",
                     f"{fid[0]:.4g} → {fid[-1]:.4g} ({fid[-1] / fid[0]:.1%} of the first)", model.hparams.fid_samples])
    report.add_table(
        f"Sample quality: {model.fid_label}", ["comparison", "Fréchet distance", "samples per side"], rows,
        note="Fréchet distance between Gaussians fitted to features of the two sample sets (torchmetrics' "
        "FrechetInceptionDistance with the features named in the title). A domain FID uses a classifier this "
        "suite trained on the same data: comparable between runs with the same classifier, not with published "
        "Inception FIDs. Finite samples keep even two halves of the test set apart: that is the floor. "
        f"Samples drawn by the {'moving-average' if model.generator_ema is not None else 'trained'} generator.",
    )


def _curves(report: Report, series: dict) -> None:
    panels = [(key, title) for key, title in (("val/fid", "Fréchet distance (validation)"),
                                              ("train/wasserstein", "critic's Wasserstein estimate"),
                                              ("train/gradient_penalty", "gradient penalty (λ·E[...])"))
              if series.get(key)]
    if not panels:
        return
    fig = Figure(figsize=(4.2 * len(panels), 3.2))
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        steps, values = zip(*series[key])
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None)
        ax.set(title=title, xlabel="training batch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    report.add_figure("gan_curves", fig, "Training curves: FID, Wasserstein estimate, penalty",
                      "Batches counted as Lightning logs them (every critic step is one batch).")


def _samples_across_training(report: Report, ctx: EvalContext, max_panels: int = 4) -> None:
    saved = sorted((ctx.run_dir / "samples").glob("*.png"))
    if not saved:
        return
    picks = sorted({round(i * (len(saved) - 1) / max(1, max_panels - 1)) for i in range(min(max_panels, len(saved)))})
    fig = Figure(figsize=(3.6 * len(picks), 3.8))
    for i, index in enumerate(picks):
        ax = fig.add_subplot(1, len(picks), i + 1)
        ax.imshow(Image.open(saved[index]).convert("RGB"))
        ax.set_title(saved[index].stem.replace("_", " "), fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    report.add_figure("samples_across_training", fig, "Samples from fixed latent vectors across training",
                      f"{len(saved)} grids were written during training to {ctx.run_dir / 'samples'}; these are "
                      "the first, the last and evenly spaced ones between. Same latent vectors in every panel.")


def _final_images(report: Report, ctx: EvalContext) -> None:
    model = ctx.model
    grid = image_grid(model.sample(model.fixed_latents))
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.axis("off")
    report.add_figure("samples", fig, "Samples of the evaluated checkpoint (fixed latent vectors)")
    g = torch.Generator().manual_seed(11)
    start, end = (torch.randn(6, model.hparams.latent_dim, generator=g) for _ in range(2))
    path = interpolation_latents(start, end, steps=10).flatten(0, 1)
    strip = image_grid(model.sample(path), nrow=10)
    fig = Figure(figsize=(10, 6.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(strip.permute(1, 2, 0).numpy())
    ax.axis("off")
    report.add_figure("latent_interpolation", fig, "Latent interpolation",
                      "Each row walks the great circle between two random latent vectors in 10 steps.")


def _points(report: Report, ctx: EvalContext) -> None:
    from datamodules.gaussian_ring import mode_coverage

    model, data = ctx.model, ctx.datamodule
    points = model.sample(torch.randn(4000, model.hparams.latent_dim, generator=torch.Generator().manual_seed(5)))
    modes, std = getattr(data, "modes", None), getattr(data, "std", None)
    report.add_figure("points_over_modes", points_figure(points, modes, std, "4,000 generated points"),
                      "Generated points over the modes", "Red: the data's modes and their 3σ circles.")
    if modes is None or std is None:
        return
    coverage = mode_coverage(points.cpu(), modes, std)
    rows = [["points within 3σ of a mode", f"{coverage['near']:.1%}", "≥ 90 %"],
            ["modes holding a point", f"{coverage['modes_hit']} of {len(modes)}", f"{len(modes)}"],
            ["smallest share of a mode", f"{min(coverage['per_mode']):.1%}", "≥ 5 %"],
            ["largest share of a mode", f"{max(coverage['per_mode']):.1%}", f"{1 / len(modes):.1%} if even"]]
    report.add_table("Mode coverage (4,000 generated points)", ["measure", "value", "target"], rows)


def extend_report(report: Report, ctx: EvalContext) -> None:
    metrics_csv = ctx.run_dir / "metrics.csv"
    series = read_metrics_csv(metrics_csv) if metrics_csv.is_file() else {}
    with torch.no_grad():
        _fid_table(report, ctx, series)
        _curves(report, series)
        _samples_across_training(report, ctx)
        if len(ctx.model.hparams.input_shape) == 3:
            _final_images(report, ctx)
        else:
            _points(report, ctx)
