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
import time
from pathlib import Path

from evaluation.frozen_runs import load_run
from evaluation.probes import dataset_tensors, features_of, probe_accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--train-limit", type=int, default=0, help="fit on the first N training images only")
    args = parser.parse_args()
    model, data, _ = load_run(args.run, args.ckpt)
    x_train, y_train = dataset_tensors(data.train_set, args.train_limit)
    x_test, y_test = dataset_tensors(data.test_set)
    start = time.perf_counter()
    sets = {"raw pixels": (x_train.flatten(1), x_test.flatten(1)),
            f"{type(model).__name__} features": (features_of(model, x_train), features_of(model, x_test))}
    print(f"features extracted in {time.perf_counter() - start:.0f} s; fit on {len(x_train)}, test on {len(x_test)}")
    print("| representation | dimensions | k-NN (k = 200) | linear probe |")
    print("|---|---|---|---|")
    for label, (train_f, test_f) in sets.items():
        accuracy = probe_accuracies(train_f.float(), y_train, test_f.float(), y_test, data.num_classes)
        print(f"| {label} | {train_f.shape[1]} | {100 * accuracy['knn']:.1f} % | {100 * accuracy['linear']:.1f} % |",
              flush=True)


if __name__ == "__main__":
    main()
