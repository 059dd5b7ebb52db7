"""Report hook for ``simclr``: frozen features against raw pixels (weighted k-NN and linear probe), the
contrastive loss on the test split, alignment and uniformity, a 2-D map of the features, the views.

The probes are fitted on the first ``LITSUITE_PROBE_TRAIN`` training images (default 5,000; 0 for
all of them) and scored on the whole test split (the validation split where there is none).
"""

from __future__ import annotations

import os

import torch
from matplotlib.figure import Figure

from evaluation.augmented_views import views_figure
from evaluation.classification import class_names_of
from evaluation.context import EvalContext
from evaluation.embedding_geometry import alignment, uniformity
from evaluation.probes import dataset_tensors, features_of, probe_accuracies
from evaluation.report import Report
from evaluation.stats import percent_with_ci
from losses.contrastive import infonce

PROBE_TRAIN_ENV = "LITSUITE_PROBE_TRAIN"
MAP_POINTS = 3000
UNIFORMITY_POINTS = 4096


def _split(datamodule, name: str):
    """The data set behind a split (``train``/``val``/``test``), or None when the data module has none."""
    dataset = getattr(datamodule, f"{name}_set", None)
    if dataset is None:
        try:
            dataset = getattr(datamodule, f"{name}_dataloader")().dataset
        except (AttributeError, NotImplementedError, TypeError):
            return None
    return dataset


def _data(ctx: EvalContext) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], str]:
    dm = ctx.datamodule
    if _split(dm, "train") is None:  # no test pass ran, so nothing set the data module up
        dm.setup("fit")
    if _split(dm, "test") is None:
        dm.setup("test")
    held_out = "test" if _split(dm, "test") is not None else "val"
    limit = int(os.environ.get(PROBE_TRAIN_ENV, "5000"))
    return dataset_tensors(_split(dm, "train"), limit), dataset_tensors(_split(dm, held_out)), held_out


@torch.no_grad()
def _contrastive_measures(model, images: torch.Tensor, batch_size: int) -> dict[str, float]:
    """InfoNCE over batches of the training size, and alignment/uniformity of the unit projections.

    Views are drawn from fixed seeds in a forked random state, so the figures repeat and no other
    random stream moves. No gathering across processes: the evaluation runs on one.
    """
    total, count, first, second = 0.0, 0, [], []
    with torch.random.fork_rng(devices=[]):
        for i, start in enumerate(range(0, len(images), batch_size)):
            batch = images[start : start + batch_size].to(model.device)
            if len(batch) < 2:
                continue
            torch.manual_seed(i)
            view1, view2 = model.augment.views(batch)
            z1, z2 = model.projector(model.backbone(torch.cat([view1, view2]))).chunk(2)
            total += infonce(z1, z2, model.hparams.temperature, gather=False).item() * len(batch)
            count += len(batch)
            first.append(z1.float().cpu())
            second.append(z2.float().cpu())
    z1, z2 = torch.cat(first), torch.cat(second)
    return {"infonce": total / count, "alignment": alignment(z1, z2), "uniformity": uniformity(z1[:UNIFORMITY_POINTS])}


def _map_figure(pixels: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, names: list[str]) -> Figure:
    """Two panels: the first two principal components of raw pixels and of the frozen features."""
    from sklearn.decomposition import PCA

    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:MAP_POINTS]
    fig = Figure(figsize=(11, 4.8))
    for i, (title, data) in enumerate((("raw pixels", pixels), ("SimCLR features", features))):
        x = data[keep].double()
        points = PCA(n_components=2, random_state=0).fit_transform(((x - x.mean(0)) / x.std(0).clamp(min=1e-6)).numpy())
        ax = fig.add_subplot(1, 2, i + 1)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels[keep].numpy(), cmap="tab10", s=4,
                             vmin=-0.5, vmax=9.5 if len(names) <= 10 else len(names) - 0.5)
        ax.set(title=f"{title} (PCA)", xticks=[], yticks=[])
    handles, _ = scatter.legend_elements(num=len(names))
    fig.legend(handles, names, loc="center right", fontsize=8, markerscale=1.2)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def extend_report(report: Report, ctx: EvalContext) -> None:
    model = ctx.model.eval()
    (x_train, y_train), (x_test, y_test), held_out = _data(ctx)
    num_classes = model.hparams.num_classes
    device = model.device
    with torch.no_grad():
        f_train, f_test = (features_of(model, x, device=device) for x in (x_train, x_test))
    pixels = probe_accuracies(x_train.flatten(1).float(), y_train, x_test.flatten(1).float(), y_test, num_classes)
    features = probe_accuracies(f_train, y_train, f_test, y_test, num_classes)
    n = len(y_test)
    for key, value in (("probe/knn_acc", features["knn"]), ("probe/linear_acc", features["linear"]),
                       ("probe/pixels_knn_acc", pixels["knn"]), ("probe/pixels_linear_acc", pixels["linear"])):
        ctx.results[key], ctx.result_sizes[key] = value, n
    report.add_table(
        f"Frozen features against raw pixels ({held_out} split)",
        ["representation", "dimensions", "weighted k-NN (cosine, k = 200)", "linear probe"],
        [["raw pixels", x_train[0].numel(), percent_with_ci(pixels["knn"], n), percent_with_ci(pixels["linear"], n)],
         [f"backbone features ({model.hparams.backbone})", f_train.shape[1], percent_with_ci(features["knn"], n),
          percent_with_ci(features["linear"], n)]],
        note=f"Both classifiers are fitted on {len(y_train):,} training images (${PROBE_TRAIN_ENV} sets how many) "
        f"and scored on {n:,} {held_out} images, 95 % Wilson intervals in brackets. k-NN: votes e^(s/0.1) of the 200 "
        "most cosine-similar training images (Wu et al. 2018); linear probe: logistic regression on standardised "
        "features. The backbone is frozen (features before the projection head, as SimCLR evaluates).",
    )
    batch_size = int(getattr(ctx.datamodule, "batch_size", 256) or 256)
    measures = _contrastive_measures(model, x_test, batch_size)
    ctx.results["test/infonce"] = measures["infonce"]
    ctx.results["embedding/alignment"] = measures["alignment"]
    ctx.results["embedding/uniformity"] = measures["uniformity"]
    report.add_table(
        f"Contrastive space ({held_out} split, two augmented views per image)",
        ["measure", "value", "range"],
        [[f"InfoNCE, batches of {batch_size}, τ = {model.hparams.temperature}", measures["infonce"],
          f"0 … ln(2·{batch_size} − 1) = {torch.tensor(2.0 * batch_size - 1).log().item():.2f}"],
         ["alignment E‖z₁ − z₂‖² (Wang & Isola 2020)", measures["alignment"], "0 (views coincide) … 4"],
         [f"uniformity log E e^(−2‖zᵢ − zⱼ‖²) over {min(n, UNIFORMITY_POINTS):,} images", measures["uniformity"],
          "0 (one point) … lower is more uniform"]],
        note="On the unit-length projections the loss compares. InfoNCE depends on the batch size (more negatives "
        "raise it); its upper end is a model that cannot tell the positive from the negatives. Views are drawn "
        "from fixed seeds. Trained with "
        f"{model.hparams.loss}: a FlatNCE run logs the same InfoNCE value during training (train/infonce).",
    )
    names = class_names_of(ctx, num_classes)
    report.add_figure("feature_map", _map_figure(x_test.flatten(1), f_test, y_test, names),
                      f"{held_out.capitalize()} images in two dimensions, coloured by class",
                      f"The first two principal components of {min(n, MAP_POINTS):,} standardised {held_out} "
                      "images: raw pixels (left) and frozen backbone features (right).")
    report.add_figure("augmented_views", views_figure(x_test[:6], model.augment), "Two augmented views per image",
                      "What the model is asked to match: each row is a test image and two views drawn with the "
                      f"run's augmentation (strength {model.hparams.strength}, "
                      f"crop area {tuple(model.hparams.crop_scale)}).")
