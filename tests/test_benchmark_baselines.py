"""The benchmark baselines compute what our layers and networks compute, and the table reports their ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_capsules
from benchmarks.baselines.capsule_baselines import TiledClassMatrixCaps, TiledConvMatrixCaps, TiledDenseCapsules
from lit_modules.components.capsules.layers import ClassMatrixCaps, ConvMatrixCaps, DenseCapsules
from lit_modules.components.capsules.squash import squash
from losses.margin import margin_loss
from losses.spread import spread_loss

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


def table_rows(table: str) -> dict[str, list[str]]:
    """The cells of each variant's row of the benchmark table."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in bench_capsules.VARIANTS:
            rows[cells[0]] = cells[1:]
    return rows


def fake_measurement(variant: str, round_index: int) -> dict:
    """A different time and memory for every variant and round, as a worker process reports them."""
    k, r = bench_capsules.VARIANTS.index(variant) + 1, round_index
    # fastest, median and peak grow differently with k, so that each ratio tells which statistic it used
    return {"variant": variant, "times_ms": [10.0 * k + r, 10.0 * k + 7 * k**2 + r, 10 * k + 13 + k**3 - r],
            "peak_mb": 11.0 * k**1.5 * (1 + r * k / 3)}


def test_benchmark_table_reports_the_measured_times_memory_and_their_ratios(monkeypatch, tmp_path):
    calls: list[tuple[str, bool]] = []

    def worker(variant: str, quick: bool) -> dict:
        calls.append((variant, quick))
        return fake_measurement(variant, sum(v == variant for v, _ in calls) - 1)

    monkeypatch.setattr(bench_capsules, "_in_subprocess", worker)
    out = tmp_path / "capsules.md"
    assert bench_capsules.main(["--quick", "--rounds", "2", "--out", str(out)]) == 0
    assert sorted(calls) == sorted((v, True) for v in bench_capsules.VARIANTS for _ in range(2))
    rows = table_rows(out.read_text())
    assert set(rows) == set(bench_capsules.VARIANTS)
    measured = {v: [fake_measurement(v, r) for r in (0, 1)] for v in bench_capsules.VARIANTS}
    fastest = {v: min(t for m in ms for t in m["times_ms"]) for v, ms in measured.items()}
    peak = {v: max(m["peak_mb"] for m in ms) for v, ms in measured.items()}
    for variant, cells in rows.items():
        times = sorted(t for m in measured[variant] for t in m["times_ms"])
        median = (times[2] + times[3]) / 2
        assert cells[0] == f"{fastest[variant]:.0f} ({median:.0f})" and cells[1] == f"{peak[variant]:.0f}"
        if variant.endswith("_tiled"):
            assert cells[2:] == ["", ""]
        else:
            tiled = f"{variant}_tiled"
            assert cells[2] == f"{fastest[tiled] / fastest[variant]:.1f}x"
            assert cells[3] == f"{peak[tiled] / peak[variant]:.1f}x"
    assert f"(measured directly: {fastest['capsnet_tiled'] / fastest['capsnet']:.2f}x)" in out.read_text()


@pytest.mark.parametrize("variant", ["capsnet", "capsnet_routing", "capsule_em"])
def test_benchmarked_networks_compute_what_their_tiled_baselines_compute(variant):
    """The speed-ups compare like with like: same weights give the same scores, loss and gradients."""
    sizes = bench_capsules.QUICK
    routing_only = variant == "capsnet_routing"
    if variant.startswith("capsnet"):
        ours, tiled = (bench_capsules.CapsNet(sizes, t, routing_only) for t in (False, True))
    else:
        ours, tiled = (bench_capsules.MatrixCapsNet(sizes, t) for t in (False, True))
    ours, tiled = _same_parameters(ours, tiled)
    torch.manual_seed(1)
    if routing_only:
        x = squash(torch.randn(sizes["batch"], sizes["primary"] * 36, 8, dtype=torch.float64))
    else:
        x = torch.randn(sizes["batch"], 1, sizes["image"], sizes["image"], dtype=torch.float64)
    y = torch.randint(0, 10, (sizes["batch"],))
    losses = []
    for model in (ours, tiled):
        scores = model(x)
        loss = margin_loss(scores, y) if variant.startswith("capsnet") else spread_loss(scores, y, 0.2)
        loss.backward()
        losses.append((scores, loss))
    torch.testing.assert_close(losses[0], losses[1])
    tiled_grads = dict(tiled.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.any(), name
        torch.testing.assert_close(p.grad, tiled_grads[name].grad, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.slow
def test_benchmark_cli_quick_writes_ratios_of_its_own_measurements(tmp_path):
    out = tmp_path / "capsules.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_capsules", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = table_rows(out.read_text())
    assert set(rows) == set(bench_capsules.VARIANTS)
    for variant in ("capsnet", "capsnet_routing", "capsule_em"):
        ours, tiled = rows[variant], rows[f"{variant}_tiled"]
        (ours_ms, ours_mb), (tiled_ms, tiled_mb) = ((float(r[0].split()[0]), float(r[1])) for r in (ours, tiled))
        # the table shows whole milliseconds: the ratio of the shown values is within their rounding of the shown one
        low, high = (tiled_ms - 0.5) / (ours_ms + 0.5), (tiled_ms + 0.5) / max(ours_ms - 0.5, 1e-9)
        assert low - 0.05 <= float(ours[2].rstrip("x")) <= high + 0.05, (variant, ours, tiled)
        low, high = (tiled_mb - 0.5) / (ours_mb + 0.5), (tiled_mb + 0.5) / max(ours_mb - 0.5, 1e-9)
        assert ours_mb <= 0.5 or low - 0.05 <= float(ours[3].rstrip("x")) <= high + 0.05, (variant, ours, tiled)
