"""SimCLR's loss and training step: FlatNCE/InfoNCE against a plain cross-entropy, and images per second.

Run from the repository root::

    python -m benchmarks.bench_contrastive             # 2N ∈ {64, 512, 4096}; both backbones
    python -m benchmarks.bench_contrastive --quick     # small, for a smoke test

Loss: forward and backward of one loss on random ``(N, 128)`` float32 embeddings (gradients
with respect to them), the best of several repeats after one warm-up call, for ``flatnce`` and
``infonce`` (``losses/contrastive.py``), the cross-entropy over the masked similarity matrix and
the broadcast cosine (``benchmarks/baselines/contrastive_reference.py``; the latter only where its
``(2N, 2N, 128)`` tensor fits). Training: ``simclr``'s own augmentation, backbone, projection head
and FlatNCE loss, with SGD; a step is two views of a batch, forward, backward and the optimiser
step, timed with the augmentation alone beside it (the same calls, without the network).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.baselines.contrastive_reference import broadcast_reference, cross_entropy_reference
from benchmarks.machine import load_average, machine_description
from losses.contrastive import flatnce, infonce

TAU = 0.1
DIM = 128


def best_times(fns: dict, repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` timed calls of each function, after one warm-up call each.

    The functions take turns, so a burst of load from other processes falls on all of them
    alike; and on a shared machine other processes only ever add time, so the minimum is the
    least disturbed measurement.
    """
    for fn in fns.values():
        fn()  # warm-up: allocations, kernel selection
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def loss_step(loss_fn, z1: torch.Tensor, z2: torch.Tensor):
    def run():
        a, b = z1.detach().requires_grad_(), z2.detach().requires_grad_()
        value = loss_fn(a, b, TAU)
        (value[0] if isinstance(value, tuple) else value).backward()

    return run


def loss_table(sizes: tuple[int, ...], repeats: int) -> list[str]:
    lines = [
        "| 2N | `flatnce` (ms) | `infonce` (ms) | cross-entropy reference (ms) | broadcast cosine (ms) "
        "| reference / flatnce |",
        "|---|---|---|---|---|---|",
    ]
    for two_n in sizes:
        g = torch.Generator().manual_seed(0)
        z1, z2 = torch.randn(two_n // 2, DIM, generator=g), torch.randn(two_n // 2, DIM, generator=g)
        variants = {"flatnce": flatnce, "infonce": infonce, "reference": cross_entropy_reference}
        # A sub-millisecond call needs many rounds for its minimum to mean anything: at least ~64k
        # anchors' worth per variant (1,000 rounds at 2N = 64, `repeats` at 4096).
        t = best_times({name: loss_step(fn, z1, z2) for name, fn in variants.items()},
                       max(repeats, 64_000 // two_n))
        # 2N·2N·D floats, plus as much again for its gradient: only where that stays under about 1 GB.
        # Timed on its own: taking turns with it would leave the others to start from its cold caches.
        if two_n * two_n * DIM * 4 * 2 < 2**30:
            t |= best_times({"broadcast": loss_step(broadcast_reference, z1, z2)}, min(repeats, 3))
        broadcast = f"{1e3 * t['broadcast']:.2f}" if "broadcast" in t else "—"
        lines.append(
            f"| {two_n} | {1e3 * t['flatnce']:.2f} | {1e3 * t['infonce']:.2f} | {1e3 * t['reference']:.2f} "
            f"| {broadcast} | {t['reference'] / t['flatnce']:.2f}× |"
        )
    return lines


def throughput_row(backbone: str, input_shape: tuple[int, int, int], batch: int, repeats: int) -> str:
    from lit_modules.simclr import SimCLR

    torch.manual_seed(0)
    model = SimCLR(input_shape=input_shape, num_classes=10, backbone=backbone)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.rand(batch, *input_shape)

    def augment():
        model.augment.views(images)

    def step():
        view1, view2 = model.augment.views(images)
        loss, _, _ = model.contrast(view1, view2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t = best_times({"step": step, "augment": augment}, repeats)
    step_time, augment_time = t["step"], t["augment"]
    c, h, w = input_shape
    return (
        f"| `{backbone}` | {c}×{h}×{w} | {batch} | {batch / step_time:.0f} | {2 * batch / step_time:.0f} "
        f"| {1e3 * step_time:.0f} | {1e3 * augment_time:.1f} | {100 * augment_time / step_time:.1f} % |"
    )


def run(quick: bool, threads: int) -> str:
    torch.set_num_threads(threads)
    sizes = (64, 512) if quick else (64, 512, 4096)
    repeats = 2 if quick else 9
    lines = [
        "## SimCLR: contrastive loss and training step",
        "",
        f"Machine: {machine_description()}. Load average at start: {load_average()} (the machine is shared;",
        "absolute times move with the load, ratios measured side by side less so).",
        "",
        f"Loss forward + backward, D = {DIM}, float32, τ = {TAU}, one process; the three taking turns, best of "
        f"max({repeats}, 64,000 / 2N) rounds (the broadcast cosine timed apart, best of {min(repeats, 3)}):",
        "",
        *loss_table(sizes, repeats),
        "",
    ]
    rows = [("small_cnn", (1, 28, 28), 64 if quick else 256), ("resnet18", (3, 32, 32), 16 if quick else 64)]
    step_repeats = max(2, repeats // 2)
    lines += [
        f"Training step (augmentation of two views, forward, FlatNCE, backward, SGD step; best of {step_repeats}):",
        "",
        "| backbone | image | batch | images/s | views/s | step (ms) | augmentation (ms) | augmentation share |",
        "|---|---|---|---|---|---|---|---|",
        *(throughput_row(name, shape, batch, step_repeats) for name, shape, batch in rows),
        "",
        f"Load average at the end: {load_average()}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", default="benchmarks/results/contrastive.md")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: on a busy machine a second one mostly waits)")
    args = parser.parse_args()
    text = run(args.quick, args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
