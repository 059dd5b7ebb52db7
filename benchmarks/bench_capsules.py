"""Time and peak memory of one training step of the capsule networks, ours against tiled baselines.

Run from the repository root::

    python -m benchmarks.bench_capsules                      # full sizes, writes benchmarks/results/capsules.md
    python -m benchmarks.bench_capsules --quick --out /tmp/capsules.md   # seconds, for a smoke test

Workloads (batch 32, CPU, one step = forward + loss + backward):

- ``capsnet``: Sabour et al. on 28x28: conv 256@9x9, 32x6x6 primary capsules of 8-D, 10 class
  capsules of 16-D with per-pair weights, 3 routing iterations, margin loss.
- ``capsnet_routing``: only the class-capsule layer of ``capsnet`` (votes and routing), on
  given primary capsules; the convolutions, identical in both variants, dominate ``capsnet``.
- ``capsule_em``: matrix capsules on 28x28 with A=64, B=8, C=D=16, K=3, 3 EM iterations,
  coordinate addition, spread loss.

Peak memory: each variant runs in a fresh Python subprocess, which reads its resident set size
just before the first step and its high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``) after
the last; the difference is the memory a training step needs on top of the model, the input and
the interpreter. Timing: wall time per step after one warm-up step. Every variant runs once per
round, ours and the baseline alternating, and the rounds repeat (``--rounds``); the speed-up is
taken from the fastest step of each variant (the least disturbed by other load on the machine),
and the median over all steps is shown beside it. Peak memory is the largest seen in any round.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.baselines.capsule_baselines import TiledClassMatrixCaps, TiledConvMatrixCaps, TiledDenseCapsules
from benchmarks.machine import load_average, machine_description
from lit_modules.components.capsules.layers import (
    ClassMatrixCaps,
    ConvMatrixCaps,
    DenseCapsules,
    PrimaryCaps,
    PrimaryMatrixCaps,
)
from lit_modules.components.capsules.squash import squash
from losses.margin import margin_loss
from losses.spread import spread_loss

FULL = {"batch": 32, "image": 28, "conv": 256, "primary": 32, "A": 64, "B": 8, "C": 16, "D": 16, "steps": 6}
QUICK = {"batch": 4, "image": 28, "conv": 16, "primary": 4, "A": 8, "B": 2, "C": 4, "D": 4, "steps": 2}
VARIANTS = (
    "capsnet",
    "capsnet_tiled",
    "capsnet_routing",
    "capsnet_routing_tiled",
    "capsule_em",
    "capsule_em_tiled",
)


class CapsNet(nn.Module):
    """Sabour et al. without the reconstruction decoder; ``routing_only`` keeps just the class layer."""

    def __init__(self, sizes: dict, tiled: bool, routing_only: bool = False) -> None:
        super().__init__()
        in_caps = sizes["primary"] * 6 * 6
        self.stem = None
        if not routing_only:
            self.stem = nn.Sequential(
                nn.Conv2d(1, sizes["conv"], 9), nn.ReLU(), PrimaryCaps(sizes["conv"], sizes["primary"], 8, 9, 2)
            )
        self.classes = TiledDenseCapsules(in_caps, 8, 10, 16) if tiled else DenseCapsules(in_caps, 8, 10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, _ = self.classes(x if self.stem is None else self.stem(x))
        return v.norm(dim=-1)


class MatrixCapsNet(nn.Module):
    """Hinton et al. (2018) with configurable A, B, C, D."""

    def __init__(self, sizes: dict, tiled: bool) -> None:
        super().__init__()
        conv_caps = TiledConvMatrixCaps if tiled else ConvMatrixCaps
        class_caps = TiledClassMatrixCaps if tiled else ClassMatrixCaps
        self.conv = nn.Conv2d(1, sizes["A"], 5, stride=2)
        self.primary = PrimaryMatrixCaps(sizes["A"], sizes["B"])
        self.conv_caps1 = conv_caps(sizes["B"], sizes["C"], kernel_size=3, stride=2)
        self.conv_caps2 = conv_caps(sizes["C"], sizes["D"], kernel_size=3, stride=1)
        self.classes = class_caps(sizes["D"], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        poses, activations = self.primary(torch.relu(self.conv(x)))
        poses, activations = self.conv_caps1(poses, activations)
        poses, activations = self.conv_caps2(poses, activations)
        return self.classes(poses, activations)[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_variant(variant: str, sizes: dict) -> dict:
    """Measure one variant in this process; meant to run in a fresh subprocess."""
    torch.manual_seed(0)
    tiled = variant.endswith("_tiled")
    capsnet = variant.startswith("capsnet")
    routing_only = variant.startswith("capsnet_routing")
    model = CapsNet(sizes, tiled, routing_only) if capsnet else MatrixCapsNet(sizes, tiled)
    if routing_only:
        x = squash(torch.randn(sizes["batch"], sizes["primary"] * 36, 8)).requires_grad_()
    else:
        x = torch.randn(sizes["batch"], 1, sizes["image"], sizes["image"])
    y = torch.randint(0, 10, (sizes["batch"],))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        out = model(x)
        loss = margin_loss(out, y) if capsnet else spread_loss(out, y, 0.2)
        loss.backward()

    rss_before = _rss_mb()
    step()
    times = []
    for _ in range(sizes["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "times_ms": [1000 * t for t in times], "peak_mb": peak - rss_before}


def _in_subprocess(variant: str, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_capsules", "--worker", variant] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def combine(runs: list[dict]) -> dict:
    """Fastest step, median step and largest peak over the rounds of one variant."""
    times = [t for run in runs for t in run["times_ms"]]
    return {"ms_min": min(times), "ms_median": statistics.median(times), "peak_mb": max(r["peak_mb"] for r in runs)}


def render(results: dict, machine: str, sizes: dict, quick: bool, rounds: int = 1) -> str:
    lines = [
        f"# Capsule benchmarks{' (quick sizes)' if quick else ''}",
        "",
        f"Machine: {machine}; load average at the end: {load_average()}.",
        f"Batch {sizes['batch']}, {sizes['image']}x{sizes['image']} input, one step = forward + loss + backward; "
        f"{rounds} round(s) of {sizes['steps']} measured steps per variant, each round in a fresh subprocess. "
        "ms/step: fastest step (median in brackets); the speed-up compares fastest steps. "
        "Peak MB: RSS high-water mark minus RSS before the first step.",
        "",
        "| variant | ms/step | peak MB | speed-up vs tiled | memory ratio (tiled / ours) |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        r = results[variant]
        speed = memory = ""
        if not variant.endswith("_tiled"):
            base = results[f"{variant}_tiled"]
            speed = f"{base['ms_min'] / r['ms_min']:.1f}x"
            memory = f"{base['peak_mb'] / max(r['peak_mb'], 1e-9):.1f}x"
        lines.append(
            f"| {variant} | {r['ms_min']:.0f} ({r['ms_median']:.0f}) | {r['peak_mb']:.0f} | {speed} | {memory} |"
        )
    ms = {variant: results[variant]["ms_min"] for variant in VARIANTS}
    stem = ms["capsnet"] - ms["capsnet_routing"]  # the two convolutions: the same code in both variants
    lines += [
        "",
        "Targets: capsule_em ≥ 5x faster and ≥ 4x less memory; capsnet ≥ 2x faster. In `capsnet` the two",
        "convolutions before the capsules (conv 256@9x9 and the primary-capsule convolution) are the same",
        f"code in both variants and take about {stem:.0f} ms of our {ms['capsnet']:.0f} ms step; only the class layer",
        f"differs ({ms['capsnet_routing']:.0f} ms ours against {ms['capsnet_routing_tiled']:.0f} ms tiled: the"
        " `capsnet_routing` rows). The whole-network",
        f"speed-up, split that way, is ({stem:.0f} + {ms['capsnet_routing_tiled']:.0f}) / ({stem:.0f} +"
        f" {ms['capsnet_routing']:.0f}) = {(stem + ms['capsnet_routing_tiled']) / (stem + ms['capsnet_routing']):.2f}x"
        f" (measured directly: {ms['capsnet_tiled'] / ms['capsnet']:.2f}x), and a class layer taking no time at all"
        f" would give {(stem + ms['capsnet_routing_tiled']) / stem:.2f}x: the shared convolutions bound it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out", default="benchmarks/results/capsules.md", help="markdown file to write")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions of every variant (default 2, quick 1)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.worker:
        print(json.dumps(run_variant(args.worker, sizes)))
        return 0
    rounds = args.rounds or (1 if args.quick else 2)
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            runs[variant].append(_in_subprocess(variant, args.quick))
    results = {variant: combine(found) for variant, found in runs.items()}
    table = render(results, machine_description(), sizes, args.quick, rounds)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
