"""Time for a mini-batch linear autoencoder to reach the truncated SVD, beside the SVD itself.

Run from the repository root::

    python -m benchmarks.bench_linear_ae                 # 10,000 × 784, k ∈ {16, 64}
    python -m benchmarks.bench_linear_ae --quick         # small, for a smoke test

The matrix is the first 10,000 Fashion-MNIST training images when the files are installed
(``apt-get install dataset-fashion-mnist``), otherwise a synthetic matrix with the same shape and
a decaying spectrum (the output says which). The autoencoder is trained as ``linear_ae`` trains it
(Adam, batch 128, learning rate 2e-3 with a cosine decay over 60 epochs); the clock stops at the
first check (every 50 steps, on the whole matrix, time included) where
‖X − XCD‖² ≤ 1.01 · ‖X − X V_k V_kᵀ‖². The SVD times are the median of 3 runs of
``torch.linalg.svd`` (all singular vectors, then truncated) and ``torch.svd_lowrank`` (q = k + 10, 4 power iterations).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from benchmarks.machine import machine_description
from lit_modules.components.linear_autoencoder import LinearAutoencoder
from lit_modules.components.subspace import principal_angles, project, top_right_singular_vectors


def load_matrix(rows: int, cols: int = 784) -> tuple[torch.Tensor, str]:
    from datamodules.base import DataError
    from datamodules.mnist import FashionMNISTDataModule

    try:
        dm = FashionMNISTDataModule()
        x = dm.load_arrays()[0][:rows].flatten(1)
        if x.shape == (rows, cols):
            return x.contiguous(), f"Fashion-MNIST training images 0..{rows - 1}"
    except DataError:
        pass
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(rows, cols, generator=g)).Q
    v = torch.linalg.qr(torch.randn(cols, cols, generator=g)).Q
    s = 100.0 * torch.arange(1, cols + 1, dtype=torch.float32).pow(-0.8)
    return (u * s) @ v.T, "synthetic (σ_i ∝ i^-0.8; Fashion-MNIST files not found)"


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autoencoder_time(x: torch.Tensor, k: int, basis: torch.Tensor, epochs: int, target: float = 1.01):
    """Seconds and steps until the error ratio first reaches ``target`` (None if not within ``epochs``).

    The learning rate follows the cosine schedule ``linear_ae`` uses, over ``epochs``: at a constant rate
    Adam's noise keeps the ratio above 1.01 for k = 64.
    """
    torch.manual_seed(0)
    ae = LinearAutoencoder(x.shape[1], k)
    optimizer = torch.optim.Adam(ae.parameters(), lr=2e-3)
    total = epochs * math.ceil(len(x) / 128)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=2e-5)
    best = (x - project(x, basis)).pow(2).sum()
    start, step, ratio = time.perf_counter(), 0, math.inf
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            batch = x[idx]
            loss = (ae(batch) - batch).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 50 == 0:
                with torch.no_grad():
                    ratio = ((ae(x) - x).pow(2).sum() / best).item()
                if ratio <= target:
                    angle = math.degrees(principal_angles(ae.decoder_basis().detach(), basis).max().item())
                    return time.perf_counter() - start, step, ratio, angle
    return None, step, ratio, math.nan


def run(quick: bool) -> str:
    rows, ks, epochs = (2000, (8, 16), 10) if quick else (10_000, (16, 64), 60)
    x, source = load_matrix(rows)
    lines = [
        "## Linear autoencoder versus SVD",
        "",
        f"Matrix: {rows} × {x.shape[1]}, {source}. Machine: {machine_description()}.",
        "",
        "| k | AE to ratio ≤ 1.01 (s) | AE steps | AE largest angle then (°) | `torch.linalg.svd` (s) "
        "| `torch.svd_lowrank` (s) | lowrank error ratio | AE / svd time | AE / lowrank time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    full_time = timed(lambda: torch.linalg.svd(x, full_matrices=False))
    for k in ks:
        basis = top_right_singular_vectors(x.double(), k).float()
        low_time = timed(lambda k=k: top_right_singular_vectors(x, k, "lowrank"))
        low_basis = top_right_singular_vectors(x, k, "lowrank")
        low_ratio = ((x - project(x, low_basis)).pow(2).sum() / (x - project(x, basis)).pow(2).sum()).item()
        seconds, steps, ratio, angle = autoencoder_time(x, k, basis, epochs)
        ae = f"{seconds:.2f}" if seconds is not None else f"not in {epochs} epochs (ratio {ratio:.3f})"
        ratios = [f"{seconds / full_time:.0f}×", f"{seconds / low_time:.0f}×"] if seconds else ["—", "—"]
        lines.append(
            f"| {k} | {ae} | {steps} | {angle:.1f} | {full_time:.3f} | {low_time:.3f} | {low_ratio:.4f} | "
            + " | ".join(ratios)
            + " |"
        )
    lines += [
        "",
        "The angle column shows what the error ratio hides: with a small gap σ_k/σ_{k+1} the autoencoder",
        "matches the SVD's error long before its subspace has turned onto the SVD's.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", default="benchmarks/results/linear_ae.md")
    args = parser.parse_args()
    text = run(args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
