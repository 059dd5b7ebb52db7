"""Size, seconds per step and memory per step of every model × data set recipe, on random tensors.

Run from the repository root::

    python -m benchmarks.bench_recipes                       # every pair, writes benchmarks/results/recipes.md
    python -m benchmarks.bench_recipes --pairs capsule@mnist --threads 1 --steps 3 --out /tmp/r.md

Each pair is built exactly as ``python train.py --model M --data D`` builds it (base, model, data
and ``M@D`` configs through the suite's LightningCLI), so the figures belong to the recipe; the
data files need not exist, since the steps run on random images of the data module's
``input_shape``. A step is ``training_step`` + backward + Adam, without the Trainer. Each pair runs
in a fresh subprocess: its memory is the high-water mark of the resident set size
(``ru_maxrss``) minus the resident set size before the model was built, set beside the estimate
``litsuite.sizing`` gives at the start of a run (measured after the steps, so that its own
allocations cannot raise the high-water mark first).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("linear_ae", "capsule", "capsule_em", "cnn_baseline")
DATA = ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "smallnorb")


def _rss() -> int:
    with open("/proc/self/statm", encoding="utf-8") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def build(model: str, data: str, overrides: list[str]):
    """Model, data module and Trainer of ``train.py --model model --data data``, without a run directory."""
    import tempfile

    from litsuite import frontend, registry
    from litsuite.cli import SuiteCLI

    ns, rest = frontend.build_parser().parse_known_args(["--model", model, "--data", data, *overrides])
    tmp = Path(tempfile.mkdtemp())
    args = frontend.cli_arguments(ns, model, data, "none", tmp, rest, resumed=False)
    args += ["--trainer.enable_progress_bar", "false"]
    cli = SuiteCLI(args, registry.model_class_path(model), save_config=False)
    return cli.model, cli.datamodule, cli.trainer


def run_pair(model: str, data: str, steps: int, threads: int | None, overrides: list[str]) -> dict:
    """Measure one pair in this process (call in a fresh one)."""
    import torch

    import litsuite.cli  # noqa: F401  (imports are not the step's memory)
    from litsuite import activation_memory, sizing

    if threads:
        torch.set_num_threads(threads)
    before = _rss()
    net, datamodule, trainer = build(model, data, overrides)
    batch = sizing.sample_batch(datamodule, datamodule.batch_size, torch.device("cpu"))
    net.train()
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        loss = activation_memory.step_loss(net, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    start = time.perf_counter()
    estimate = sizing.measure(net, datamodule, datamodule.batch_size)
    estimate_seconds = time.perf_counter() - start
    return {
        "model": model,
        "data": data,
        "input_shape": list(datamodule.input_shape),
        "batch": datamodule.batch_size,
        "parameters": sum(p.numel() for p in net.parameters()),
        "seconds_per_step": statistics.median(times[1:]),
        "fastest_step": min(times[1:]),
        "measured_bytes": peak,
        "estimate_bytes": estimate.total,
        "activation_bytes": estimate.activations,
        "estimate_seconds": estimate_seconds,
        "threads": torch.get_num_threads(),
    }


def in_subprocess(pair: str, steps: int, threads: int | None, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_recipes", "--one", pair, "--steps", str(steps)]
    cmd += ["--threads", str(threads)] if threads else []
    proc = subprocess.run([*cmd, *overrides], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"pair": pair, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(results: list[dict], machine: str) -> str:
    from litsuite.sizing import human_bytes, human_count

    lines = [
        "# Recipes: size, time and memory of one training step",
        "",
        f"Machine: {machine}. `python -m benchmarks.bench_recipes`; random tensors of the data set's shape;",
        f"torch threads per pair: {sorted({r['threads'] for r in results if 'threads' in r})}.",
        "A step is training_step + backward + Adam; s/step is the median after one warm-up step.",
        "Memory: peak RSS growth of the step measured in a fresh process, and `litsuite.sizing`'s estimate",
        "(what a run prints at its start) with the time it took.",
        "",
        "| model | data | input | batch | parameters | s/step | memory measured | estimate | estimate took |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['pair']} | | | | | error: {r['error']} | | | |")
            continue
        shape = "×".join(str(s) for s in r["input_shape"])
        lines.append(
            f"| {r['model']} | {r['data']} | {shape} | {r['batch']} | {human_count(r['parameters'])} |"
            f" {r['seconds_per_step']:.3f} | {human_bytes(r['measured_bytes'])} | {human_bytes(r['estimate_bytes'])} |"
            f" {r['estimate_seconds']:.2f} s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="*", help="model@data pairs (default: every pair)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results/recipes.md")
    parser.add_argument("--quick", action="store_true", help="one step of the 8×8 recipes, for a smoke test")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    if args.quick:
        args.steps, args.pairs = 1, args.pairs or [f"{m}@synthetic" for m in MODELS]
    if args.one:
        model, data = args.one.split("@")
        print(json.dumps(run_pair(model, data, args.steps, args.threads, overrides)))
        return 0
    from benchmarks.machine import load_average, machine_description

    pairs = args.pairs or [f"{m}@{d}" for m in MODELS for d in DATA]
    results = []
    for pair in pairs:
        results.append(in_subprocess(pair, args.steps, args.threads, overrides))
        print(json.dumps(results[-1]), flush=True)
    text = render(results, f"{machine_description()}; load {load_average()}")
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
