r"""Fréchet distances that work offline: torchmetrics' ``FrechetInceptionDistance`` with features the suite controls.

The standard FID needs Inception-v3 weights that no package ships (pytorch-fid, torch-fidelity and
clean-fid all download them). Here the features are, in order of preference:

- ``fid_weights PATH`` given: the standard Inception FID, from that weights file (needs torch-fidelity);
- ``fid_classifier PATH`` given: the penultimate layer of a classifier the suite trained on the same
  data set (e.g. ``cnn_baseline``), the **domain FID**. It is comparable between runs that use the same
  classifier checkpoint, not with published Inception FIDs;
- images without either: the raw pixels (a **pixel Fréchet distance**, a weak but honest stand-in);
- vectors (2-D points): the coordinates themselves (the Fréchet distance of the point clouds).

The distance is the Fréchet distance between Gaussians fitted to the two feature sets:

.. math::
    d^2 = \lVert \mu_r - \mu_g \rVert^2 + \operatorname{tr}(\Sigma_r + \Sigma_g - 2 (\Sigma_r \Sigma_g)^{1/2})
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class PenultimateFeatures(nn.Module):
    """The input of a classifier's last ``nn.Linear`` layer: its penultimate representation.

    Found by module order, so any classifier whose logits come from a final linear layer works
    without naming its layers. The classifier is frozen and kept in eval mode (no dropout).

    Shape:
        - x: ``(B, *input_shape)`` as the classifier was trained on
        - output: ``(B, num_features)``
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(classifier).__name__} has no nn.Linear layer to take penultimate features from")
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = linears[-1].in_features
        self._captured: list[torch.Tensor] = []
        linears[-1].register_forward_pre_hook(lambda module, args: self._captured.append(args[0]))

    def train(self, mode: bool = True) -> PenultimateFeatures:
        return super().train(False)  # always evaluated without dropout, whatever the metric's owner does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        with torch.no_grad():
            self.classifier(x.float())
        return self._captured[-1].flatten(1).float()


class Flattened(nn.Module):
    """The samples themselves, flattened: features for the pixel and point Fréchet distances."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float()


def load_classifier(path: str | Path) -> nn.Module:
    """A LightningModule checkpoint written by ``train.py`` (its class comes from the checkpoint's hyperparameters)."""
    from lightning.pytorch import LightningModule
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"--model.fid_classifier: no such checkpoint {path}; train one first, e.g. "
            "python train.py --model cnn_baseline --data fashion_mnist, and pass its checkpoints/best-*.ckpt"
        )
    from litsuite.cli import import_class

    try:
        # the class is named in the checkpoint (LightningCLI stores it); Lightning loads only imported classes
        class_path = torch.load(path, map_location="cpu", weights_only=False)["hyper_parameters"]["_class_path"]
        cls = import_class(class_path)
        if not issubclass(cls, LightningModule):
            raise TypeError(f"{class_path} is not a LightningModule")
        # Built inside a model's __init__ that LightningCLI instantiates: Lightning's context of "given"
        # hyperparameters is still set then, and the classifier's save_hyperparameters would take the
        # outer model's instead of its own (its forward then misses its settings). Load outside it.
        token = _given_hyperparameters.set(None)
        try:
            return cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
        finally:
            _given_hyperparameters.reset(token)
    except Exception as err:  # a checkpoint of another kind of file, or one not written through train.py
        raise ValueError(f"--model.fid_classifier: cannot load {path} as a model checkpoint ({err})") from None


def fid_features(
    input_shape: tuple[int, ...], fid_classifier: str | None, fid_weights: str | None
) -> tuple[nn.Module | int, str]:
    """``(feature, label)`` for ``FrechetInceptionDistance(feature=...)``; see the module docstring for the choice."""
    shape = tuple(input_shape)
    if fid_weights:
        if not Path(fid_weights).is_file():
            raise ValueError(f"--model.fid_weights: no such file {fid_weights}")
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise ValueError(
                "--model.fid_weights needs torch-fidelity for the Inception network (pip install torch-fidelity); "
                "without it use --model.fid_classifier CKPT for the domain FID"
            ) from None
        return 2048, "Inception FID"
    if fid_classifier:
        classifier = load_classifier(fid_classifier)
        trained_on = tuple(getattr(classifier, "hparams", {}).get("input_shape", shape))
        if trained_on != shape:
            raise ValueError(
                f"--model.fid_classifier was trained on samples of shape {trained_on}, but this data gives {shape}; "
                "use a classifier trained on the same data set"
            )
        return PenultimateFeatures(classifier), f"domain FID ({type(classifier).__name__} penultimate features)"
    if len(shape) == 1:
        return Flattened(shape[0]), "Fréchet distance of the points"
    return Flattened(math.prod(shape)), "pixel Fréchet distance (no --model.fid_classifier given)"


def make_fid(feature: nn.Module | int, fid_weights: str | None = None) -> FrechetInceptionDistance:
    """A ``FrechetInceptionDistance`` on ``feature``, taking images in [0, 1] (float); synced across DDP ranks."""
    if isinstance(feature, int):
        return FrechetInceptionDistance(feature, normalize=True, feature_extractor_weights_path=fid_weights)
    return FrechetInceptionDistance(feature=feature, normalize=True)


def standard_images(x: torch.Tensor, inception: bool) -> torch.Tensor:
    """Images as the feature network takes them: 3 channels for Inception, unchanged otherwise."""
    return x.expand(-1, 3, -1, -1) if inception and x.dim() == 4 and x.shape[1] == 1 else x


@torch.no_grad()
def real_vs_real_fid(metric: FrechetInceptionDistance, images: torch.Tensor, batch_size: int = 500) -> float:
    """The floor: the distance between the two halves of ``images`` (the first against the second).

    Finite samples make even two halves of one data set differ; a generator cannot be expected to
    come closer to the data than this with the same number of samples.

    Shape:
        - images: ``(2N, *S)``
    """
    half = len(images) // 2
    metric.reset()
    inception = not metric.used_custom_model
    for start in range(0, half, batch_size):
        metric.update(standard_images(images[start : min(half, start + batch_size)], inception), real=True)
        second = images[half + start : half + min(half, start + batch_size)]
        metric.update(standard_images(second, inception), real=False)
    value = float(metric.compute())
    metric.reset()
    return value
