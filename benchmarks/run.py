"""Run every benchmark, each in its own process, and write their results into one Markdown file.

python -m benchmarks.run --out BENCHMARKS.md          # what `make bench` does
python -m benchmarks.run --only linear_ae --quick     # one benchmark, small sizes
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import machine_description

BENCHMARKS = (
    "linear_ae", "capsules", "ddp_scaling", "recipes", "contrastive", "wgan_gp", "skipgram", "glyphs", "ocr_read",
)
RESULTS = Path("benchmarks/results")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run just these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--collect", action="store_true", help="only gather the existing results into --out")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in [] if args.collect else args.only or BENCHMARKS:
        command = [sys.executable, "-m", f"benchmarks.bench_{name}", "--out", str(RESULTS / f"{name}.md")]
        print("$", " ".join(command), flush=True)
        subprocess.run(command + (["--quick"] if args.quick else []), check=True)
    sections = [
        (RESULTS / f"{name}.md").read_text(encoding="utf-8")
        for name in BENCHMARKS
        if (RESULTS / f"{name}.md").is_file()
    ]
    header = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.\n"
        "Each section states its workload and method; ratios compare variants measured side by side in one run.\n"
        "Sections come from `benchmarks/results/*.md`; rerun one with `python -m benchmarks.run --only NAME`.\n"
    )
    Path(args.out).write_text(header + "\n" + "\n\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
