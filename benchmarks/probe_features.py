"""Linear probe and weighted k-NN on a trained run's frozen features, beside the same two on raw pixels.

Run from the repository root::

    python -m benchmarks.probe_features --run runs/<run>            # train split → test split
    python -m benchmarks.probe_features --run runs/<run> --train-limit 10000

The run's ``config.yaml`` names its data module; its checkpoint (``checkpoints/last.ckpt`` unless
``--ckpt``) gives the model, whose ``forward`` must return features. Both classifiers are fitted
on the training split (less the validation share) and scored on the test split:
``evaluation/probes.py`` (k-NN: cosine, k = 200, weights e^{s/0.1}; linear probe: logistic
regression on standardised features).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import torch

from evaluation.probes import linear_probe_predict, weighted_knn_predict
from litsuite import registry


def instantiate(section: dict):
    module, _, name = section["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**(section.get("init_args") or {}))


@torch.no_grad()
def features_of(model, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)])


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    return (predicted == labels).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--train-limit", type=int, default=0, help="fit on the first N training images only")
    args = parser.parse_args()
    config = registry.load_yaml(args.run / "config.yaml")
    data = instantiate(config["data"])
    data.setup("fit")
    x_train, y_train = data.train_set.tensors
    x_test, y_test = data.test_set.tensors
    if args.train_limit:
        x_train, y_train = x_train[: args.train_limit], y_train[: args.train_limit]
    model_class = config["model"]["class_path"]
    module, _, name = model_class.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls.load_from_checkpoint(args.ckpt or args.run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    start = time.perf_counter()
    sets = {"raw pixels": (x_train.flatten(1), x_test.flatten(1)),
            f"{name} features": (features_of(model, x_train), features_of(model, x_test))}
    print(f"features extracted in {time.perf_counter() - start:.0f} s; fit on {len(x_train)}, test on {len(x_test)}")
    print("| representation | dimensions | k-NN (k = 200) | linear probe |")
    print("|---|---|---|---|")
    for label, (train_f, test_f) in sets.items():
        knn = accuracy(weighted_knn_predict(train_f, y_train, test_f, data.num_classes), y_test)
        probe = accuracy(linear_probe_predict(train_f, y_train, test_f), y_test)
        print(f"| {label} | {train_f.shape[1]} | {100 * knn:.1f} % | {100 * probe:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
