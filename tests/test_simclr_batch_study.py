"""The small-batch study: every run sees the same images, configs load as train.py configs, the array is
submitted through the sweep template, and a tiny study writes its report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from evaluation import batch_study
from evaluation.sweep import write_configs


def test_every_batch_size_sees_the_same_images_with_lr_scaled_by_the_square_root(tmp_path):
    paths = write_configs(tmp_path, batch_study.study_configs(samples=4096, lr=0.3, losses=("flatnce", "infonce"),
                                                              batches=(16, 64, 256)))
    assert [p.name for p in paths] == [f"{loss}-b{b}.yaml" for loss in ("flatnce", "infonce") for b in (16, 64, 256)]
    for path in paths:
        config = yaml.safe_load(path.read_text())
        batch = config["data"]["init_args"]["batch_size"]
        assert config["trainer"]["max_steps"] * batch == 4096
        assert config["model"]["init_args"]["lr"] == pytest.approx(0.3 * math.sqrt(batch / 256), rel=1e-5)
        assert config["model"]["init_args"]["loss"] == path.stem.split("-")[0]


def test_slurm_mode_renders_one_array_task_per_config(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    root = Path(batch_study.__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # submit.py checks config paths relative to --chdir, the repository
    code = batch_study.main(["--samples", "512", "--batches", "16", "32", "--out", str(out), "--slurm", "--",
                             "--dry-run", "--cpu", "--out-dir", str(tmp_path / "generated")])
    assert code == 0
    (script,) = (tmp_path / "generated").glob("simclr-batch-study-*.sbatch")
    text = script.read_text()
    assert "#SBATCH --array=0-3" in text
    assert all(f"{out}/configs/{name}.yaml" in text for name in ("flatnce-b16", "flatnce-b32", "infonce-b16"))
    assert "--data fashion_mnist" in text and "--config" in text


@pytest.mark.slow
def test_a_tiny_study_trains_each_run_and_writes_the_report():
    from conftest import FAST  # noqa: F401 - the same isolation as other end-to-end tests

    code = batch_study.main(["--data", "synthetic", "--samples", "64", "--batches", "16", "32", "--probe-train", "100",
                             "--out", "study"])
    assert code == 0
    md = Path("study/report.md").read_text()
    assert "Frozen features by loss and batch size" in md and "raw pixels" in md
    assert md.count("| flatnce |") == 2 and md.count("| infonce |") == 2
    assert all(Path("study", f"{name}.png").stat().st_size > 1000 for name in ("accuracy_vs_batch", "gradient_norm"))
    # a second call trains nothing again
    assert batch_study.main(["--data", "synthetic", "--samples", "64", "--batches", "16", "32", "--probe-train", "100",
                             "--out", "study"]) == 0
