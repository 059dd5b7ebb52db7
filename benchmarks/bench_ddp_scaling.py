"""Training throughput of 2-process CPU DDP against one process, at equal per-process batch.

Run from the repository root::

    python -m benchmarks.bench_ddp_scaling                          # linear_ae, and capsule if configured
    python -m benchmarks.bench_ddp_scaling --models linear_ae capsule --quick
    python -m benchmarks.bench_ddp_scaling --out benchmarks/results/ddp_scaling.md

Each measurement is a real ``train.py`` run (``--devices 1`` or ``--devices 2``, gloo) on synthetic
images of the size the model is configured for. Every process uses exactly one intra-op thread:
``OMP_NUM_THREADS=1``/``MKL_NUM_THREADS=1`` in its environment and ``torch.set_num_threads(1)`` in
:class:`StepTimer`, which also records what torch reports. The timer starts after ``warmup`` steps
(process start, DDP set-up and first-step allocations excluded) and stops ``steps`` steps later;
throughput is samples per second summed over the processes. Single- and two-process runs
alternate, ``repeats`` of each, and the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from benchmarks.machine import load_average, machine_description

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.6  # two processes must deliver at least this many times one process's samples per second
# Per model: synthetic image side (the size its config is built for) and per-process batches: the
# config's first, then larger ones, since on CPU the synchronisation per step is what DDP must amortise.
WORKLOADS = {
    "linear_ae": {"image_size": 28, "batches": (128, 512, 2048, 4096), "note": "28×28 (Fashion-MNIST-sized)"},
    "capsule": {"image_size": 8, "batches": (64, 256), "note": "8×8 (digits-sized), 3 routing iterations"},
}
DEFAULT_WORKLOAD = {"image_size": 28, "batches": (64,), "note": "28×28"}


class StepTimer(Callback):
    """Times ``steps`` training steps after ``warmup`` on rank zero and writes the result as JSON to ``out``."""

    def __init__(self, out: str = "", warmup: int = 10, steps: int = 40) -> None:
        self.out, self.warmup, self.steps = out, warmup, steps
        self._start = 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:
        torch.set_num_threads(1)  # explicit, whatever the launcher or the environment chose

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self._start = time.perf_counter()
        elif trainer.global_step == self.warmup + self.steps:
            elapsed = time.perf_counter() - self._start
            if trainer.is_global_zero:
                batch_size = len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)
                result = {"seconds": elapsed, "steps": self.steps, "batch": batch_size,
                          "world_size": trainer.world_size, "threads": torch.get_num_threads()}
                Path(self.out).write_text(json.dumps(result))


def measure(model: str, devices: int, workload: dict, batch: int, warmup: int, steps: int) -> dict:
    """One ``train.py`` run; returns the timer's JSON plus samples per second."""
    samples = int((warmup + steps + 2) * batch * devices / 0.8) + 1  # 80 % of the samples are the train split
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        command = [
            sys.executable, "train.py", "--model", model, "--data", "synthetic", "--devices", str(devices),
            "--logger", "none", "--data.init_args.num_samples", str(samples),
            "--data.init_args.image_size", str(workload["image_size"]), "--data.init_args.batch_size", str(batch),
            "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0",
            "--trainer.limit_train_batches", str(warmup + steps), "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.callbacks+=benchmarks.bench_ddp_scaling.StepTimer", "--trainer.callbacks.out", str(out),
            "--trainer.callbacks.warmup", str(warmup), "--trainer.callbacks.steps", str(steps),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LITSUITE_RUNS_DIR": tmp,
               "PYTHONPATH": str(REPO)}
        env.pop("LITSUITE_RUN_DIR", None)
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not out.is_file():
            tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            raise RuntimeError(f"{model} on {devices} process(es) failed:\n{tail}")
        result = json.loads(out.read_text())
    result["samples_per_s"] = result["steps"] * result["batch"] * result["world_size"] / result["seconds"]
    return result


def default_models() -> list[str]:
    """linear_ae, plus capsule once ``configs/model/capsule.yaml`` exists."""
    return ["linear_ae"] + (["capsule"] if (REPO / "configs" / "model" / "capsule.yaml").is_file() else [])


def run(models: list[str], quick: bool, repeats: int) -> str:
    warmup, steps = (3, 10) if quick else (10, 60)
    lines = [
        "## DDP scaling on CPU: 2 processes against 1",
        "",
        f"Machine: {machine_description()}.",
        "",
        "Every process runs with one intra-op thread, set explicitly (`torch.set_num_threads(1)`,",
        "`OMP_NUM_THREADS=1`); two processes use gloo on this machine's two cores. Per-process batch is the",
        f"same in both columns. Timed: {steps} steps (fewer for the larger batches) after {warmup} warm-up steps of a",
        f"`train.py` run on synthetic images; median of {repeats} alternating runs each. Target: ≥ {TARGET}×.",
        "",
        "| model | workload | per-process batch | threads/process | 1 process (samples/s) | 2 processes (samples/s)"
        " | speed-up | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        workload = WORKLOADS.get(model, DEFAULT_WORKLOAD)
        if not (REPO / "configs" / "model" / f"{model}.yaml").is_file():
            lines.append(f"| {model} | — | — | — | — | — | — | no configs/model/{model}.yaml |")
            continue
        for batch in workload["batches"][:1] if quick else workload["batches"]:
            single, double = [], []
            timed = max(steps // 4, steps * workload["batches"][0] // batch)  # about the same samples each
            for _ in range(repeats):
                single.append(measure(model, 1, workload, batch, warmup, timed))
                double.append(measure(model, 2, workload, batch, warmup, timed))
            one = statistics.median(r["samples_per_s"] for r in single)
            two = statistics.median(r["samples_per_s"] for r in double)
            threads = "/".join(map(str, sorted({r["threads"] for r in single + double})))
            verdict = "met" if two / one >= TARGET else "**missed**"
            lines.append(f"| {model} | {workload['note']} | {batch} | {threads} | {one:,.0f} | {two:,.0f} | "
                         f"{two / one:.2f}× | {verdict} |")
            print(lines[-1], flush=True)
    lines += [
        "",
        f"Load average when the last run ended: {load_average()} (2 is both cores busy with these runs alone).",
        "",
        "Every DDP step waits for the other process at its synchronisation points: the gradient",
        "all-reduce, which overlaps the backward pass, and Lightning's broadcast of its stop flag before",
        "each batch. (litsuite adds none per step: the loss guard and the preemption handler compare",
        "flags every few steps, and linear_ae asks DDP not to re-broadcast its constant buffers.) On CPU",
        "each costs a fraction of a millisecond plus whatever the slower process is behind, so a second",
        "process pays off in proportion to how long a step computes: the rows with larger per-process",
        "batches show where that balance lies on this machine.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="registry names (default: linear_ae, capsule)")
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="runs per column (default 3, 1 with --quick)")
    parser.add_argument("--out", default="benchmarks/results/ddp_scaling.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in the measured processes, so the machine line below reports the same
    repeats = args.repeats or (1 if args.quick else 3)
    text = run(args.models or default_models(), args.quick, repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
