"""The benchmark baselines compute the same functions as our layers, and the benchmark runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_capsules
from benchmarks.baselines.capsule_baselines import TiledClassMatrixCaps, TiledConvMatrixCaps, TiledDenseCapsules
from lit_modules.components.capsules.layers import ClassMatrixCaps, ConvMatrixCaps, DenseCapsules

ROOT = Path(__file__).resolve().parents[1]


def _same_parameters(ours, baseline):
    ours = ours.double()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.startswith("beta"):
                p.normal_()
    baseline.double().load_state_dict(ours.state_dict())
    return ours, baseline


def test_dense_baseline_matches():
    torch.manual_seed(0)
    ours, base = _same_parameters(DenseCapsules(20, 8, 10, 16), TiledDenseCapsules(20, 8, 10, 16))
    u = torch.randn(3, 20, 8, dtype=torch.float64)
    for a, b in zip(ours(u), base(u)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_baseline_matches(stride):
    torch.manual_seed(stride)
    ours, base = _same_parameters(
        ConvMatrixCaps(3, 4, 3, stride, 3, lambda_scale=1.0), TiledConvMatrixCaps(3, 4, 3, stride, 3, lambda_scale=1.0)
    )
    poses = torch.randn(2, 7, 7, 3, 4, 4, dtype=torch.float64)
    act = torch.rand(2, 7, 7, 3, dtype=torch.float64)
    for a, b in zip(ours(poses, act), base(poses, act)):
        torch.testing.assert_close(a, b)


def test_class_baseline_matches():
    torch.manual_seed(0)
    ours, base = _same_parameters(
        ClassMatrixCaps(3, 5, 3, lambda_scale=1.0), TiledClassMatrixCaps(3, 5, 3, lambda_scale=1.0)
    )
    poses = torch.randn(2, 3, 3, 3, 4, 4, dtype=torch.float64)
    act = torch.rand(2, 3, 3, 3, dtype=torch.float64)
    for a, b in zip(ours(poses, act), base(poses, act)):
        torch.testing.assert_close(a, b)


def test_benchmark_table_lists_every_variant_with_ratios():
    fake = {
        v: bench_capsules.combine([{"times_ms": [100.0 * (i + 1), 300.0 * (i + 1)], "peak_mb": 10.0 * (i + 1)}])
        for i, v in enumerate(bench_capsules.VARIANTS)
    }
    table = bench_capsules.render(fake, "test machine", bench_capsules.QUICK, quick=True)
    for variant in bench_capsules.VARIANTS:
        assert f"| {variant} |" in table
    assert "| capsnet | 100 (200) | 10 | 2.0x | 2.0x |" in table
    assert "Machine: test machine; load average" in table


@pytest.mark.slow
def test_benchmark_variants_run_in_process():
    for variant in bench_capsules.VARIANTS:
        result = bench_capsules.run_variant(variant, dict(bench_capsules.QUICK, steps=1))
        assert len(result["times_ms"]) == 1 and result["times_ms"][0] > 0


@pytest.mark.slow
def test_benchmark_cli_quick(tmp_path):
    out = tmp_path / "capsules.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_capsules", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("# Capsule benchmarks")
