"""Fill an sbatch template from slurm/templates/ and submit it with sbatch.

The rendered script is written to slurm/generated/<job name>-<stamp>.sbatch (gitignored),
the exact sbatch command is printed and run (unless --dry-run), and the job id is printed.
Arguments after `--` go to train.py unchanged. Pure standard library.

Examples:
    # one node, 4 GPUs, 4 DDP tasks
    python slurm/submit.py --template single_node --model capsule_em --gpus-per-node 4 \\
        --partition gpu --time 04:00:00 -- --trainer.max_epochs 50 --logger wandb

    # 2 nodes x 8 GPUs, charged to an account, conda environment
    python slurm/submit.py --template multi_node --model simclr --nodes 2 --gpus-per-node 8 \\
        --account proj42 --setup "module load cuda/12.4 && conda activate litsuite"

    # job array over seeds (one run per seed) or over config files
    python slurm/submit.py --template sweep --model linear_ae --seeds 0 1 2 3
    python slurm/submit.py --template sweep --model linear_ae --configs configs/a.yaml configs/b.yaml

    # CPU-only job, 2 tasks under gloo (what the tests run on the local test cluster)
    python slurm/submit.py --template single_node --model linear_ae --gpus-per-node 2 --cpu \\
        --time 00:10:00 -- --data synthetic --logger csv

    # only write the script and print the command
    python slurm/submit.py --template single_node --model linear_ae --dry-run

Template variables, written {{name}} in the templates (an `#SBATCH --opt={{name}}` line that
renders empty is dropped, so optional options simply disappear):
    job_name, partition, account, nodes, tasks_per_node (= devices per node), gres,
    cpus_per_task, mem, time, output, chdir, extra_directives, setup, model, train_args,
    array, sweep_arg, sweep_values  (the last three: sweep template only)
Each comes from the option of the same name, except: tasks_per_node from --gpus-per-node;
gres from --gpus-per-node/--gpu-type (empty with --cpu); extra_directives from --sbatch-option;
train_args = (--trainer.accelerator cpu with --cpu) + everything after `--`; sweep_values from
--seeds/--configs.

Defaults that depend on the cluster can come from the environment:
    LITSUITE_SLURM_PARTITION, LITSUITE_SLURM_ACCOUNT, LITSUITE_SLURM_TIME, LITSUITE_SLURM_SETUP
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as `python slurm/submit.py`: the registry lives in the repository's package

from litsuite import registry  # noqa: E402 - needs the path above; standard library only

TEMPLATES = REPO / "slurm" / "templates"
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
EMPTY_DIRECTIVE = re.compile(r"^#SBATCH\s+--[\w-]+=\s*$")
SAFE_WORD = re.compile(r"^[\w.:+@%-]*$")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split argv at the first `--` and parse the submit options before it."""
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1 :]
    else:
        train_args = []
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="slurm/submit.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--template", default="single_node",
                   help="single_node | multi_node | sweep, or a path to a .sbatch template (default: single_node)")
    p.add_argument("--model", required=True, help="model name, as for train.py --model")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes (default: 1)")
    p.add_argument("--gpus-per-node", "--devices-per-node", dest="devices", type=int, default=1,
                   help="GPUs per node = tasks per node; with --cpu, CPU processes per node (default: 1)")
    p.add_argument("--gpu-type", default="", help="GPU type for --gres, e.g. a100 -> gpu:a100:N (default: any)")
    p.add_argument("--cpu", action="store_true",
                   help="CPU-only job: no --gres, gloo backend, train.py gets --trainer.accelerator cpu")
    p.add_argument("--cpus-per-task", type=int, default=None,
                   help="CPU cores per task (default: 4, or 1 with --cpu)")
    p.add_argument("--mem", default="", help="memory per node, e.g. 64G (default: the cluster's default)")
    p.add_argument("--partition", default=env("LITSUITE_SLURM_PARTITION", ""),
                   help="partition (default: $LITSUITE_SLURM_PARTITION, else the cluster's default)")
    p.add_argument("--account", default=env("LITSUITE_SLURM_ACCOUNT", ""),
                   help="account to charge (default: $LITSUITE_SLURM_ACCOUNT, else none)")
    p.add_argument("--time", default=env("LITSUITE_SLURM_TIME", "01:00:00"),
                   help="time limit [D-]HH:MM:SS (default: $LITSUITE_SLURM_TIME, else 01:00:00)")
    p.add_argument("--setup", default=env("LITSUITE_SLURM_SETUP", "source .venv/bin/activate"),
                   help="shell command run before training, e.g. 'module load cuda && conda activate x'"
                        " (default: $LITSUITE_SLURM_SETUP, else 'source .venv/bin/activate')")
    p.add_argument("--job-name", default="", help="job name (default: the model name, +'-sweep' for sweeps)")
    p.add_argument("--output", default="",
                   help="log file, relative to --chdir (default: slurm/logs/%%x-%%j.out, %%x-%%A_%%a.out for arrays)")
    p.add_argument("--chdir", default=str(REPO), help="working directory of the job (default: the repo root)")
    p.add_argument("--sbatch-option", action="append", default=[], metavar="OPT",
                   help="extra #SBATCH option, repeatable, e.g. --sbatch-option=--qos=high")
    sweep = p.add_mutually_exclusive_group()
    sweep.add_argument("--seeds", nargs="+", default=[], help="sweep: one array task per seed")
    sweep.add_argument("--configs", nargs="+", default=[], help="sweep: one array task per config file")
    p.add_argument("--sweep-arg", default="",
                   help="train.py option that receives the sweep value (default: --seed_everything or --config)")
    p.add_argument("--array", default="",
                   help="sweep: array index spec, e.g. 0-3 or 0-7%%2 (default: one task per sweep value)")
    p.add_argument("--out-dir", default=str(REPO / "slurm" / "generated"),
                   help="where rendered scripts go (default: slurm/generated)")
    p.add_argument("--dry-run", action="store_true", help="write the script and print the command, don't submit")
    return p.parse_args(argv), train_args


def template_path(name: str) -> Path:
    """Resolve a template name (single_node) or path to an existing file."""
    path = Path(name)
    if not path.is_file():
        path = TEMPLATES / f"{name}.sbatch"
    if not path.is_file():
        known = ", ".join(sorted(t.stem for t in TEMPLATES.glob("*.sbatch")))
        raise SystemExit(f"submit.py: no template {name!r}; choose one of: {known}")
    return path


def check_names(model: str, train_args: list[str]) -> None:
    """Check --model, and train.py's --data if given, against the registry before anything is written."""
    registry.model_config(model)
    for i, arg in enumerate(train_args):
        if arg == "--data" and i + 1 < len(train_args):
            registry.data_config(train_args[i + 1])
        elif arg.startswith("--data="):
            registry.data_config(arg.partition("=")[2])


def build_values(args: argparse.Namespace, train_args: list[str], is_sweep: bool) -> dict[str, str]:
    """Check the options and turn them into the template variables."""
    def fail(msg: str) -> None:
        raise SystemExit(f"submit.py: {msg}")

    if args.nodes < 1 or args.devices < 1:
        fail("--nodes and --gpus-per-node must be at least 1")
    if args.template == "single_node" and args.nodes != 1:
        fail("single_node runs on one node; use --template multi_node for --nodes > 1")
    if args.cpu and args.gpu_type:
        fail("--cpu and --gpu-type exclude each other")
    for opt in ("model", "partition", "account", "time", "mem", "job_name", "gpu_type"):
        if not SAFE_WORD.match(getattr(args, opt)):
            fail(f"--{opt.replace('_', '-')} {getattr(args, opt)!r} has characters sbatch/bash would misread")
    values = list(args.seeds or args.configs)
    if not is_sweep and (values or args.array):
        fail("--seeds/--configs/--array need --template sweep")
    if is_sweep and not (values or args.array):
        fail("a sweep needs --seeds, --configs or --array")
    for config in args.configs:
        if not (Path(args.chdir) / config).is_file():
            fail(f"--configs {config}: no such file (paths are relative to --chdir {args.chdir})")
    for opt in args.sbatch_option:
        if not opt.startswith("--") or "\n" in opt:
            fail(f"--sbatch-option {opt!r} must look like --name=value")

    gres = "" if args.cpu else ":".join(["gpu", args.gpu_type, str(args.devices)] if args.gpu_type
                                         else ["gpu", str(args.devices)])
    cpus = args.cpus_per_task or (1 if args.cpu else 4)
    accelerator = ["--trainer.accelerator", "cpu"] if args.cpu else []
    job_name = args.job_name or (f"{args.model}-sweep" if is_sweep else args.model)
    output = args.output or ("slurm/logs/%x-%A_%a.out" if is_sweep else "slurm/logs/%x-%j.out")
    return {
        "job_name": job_name,
        "partition": args.partition,
        "account": args.account,
        "nodes": str(args.nodes),
        "tasks_per_node": str(args.devices),
        "gres": gres,
        "cpus_per_task": str(cpus),
        "mem": args.mem,
        "time": args.time,
        "output": output,
        "chdir": str(Path(args.chdir).resolve()),
        "extra_directives": "\n".join(f"#SBATCH {opt}" for opt in args.sbatch_option),
        "setup": args.setup,
        "model": args.model,
        "train_args": shlex.join(accelerator + train_args),
        "array": args.array or (f"0-{len(values) - 1}" if values else ""),
        "sweep_arg": args.sweep_arg or ("--config" if args.configs else "--seed_everything"),
        "sweep_values": " ".join(shlex.quote(v) for v in values),
    }


def render(text: str, values: dict[str, str]) -> str:
    """Replace {{name}} placeholders; drop `#SBATCH --opt=` lines and lone placeholders left empty."""
    unknown = sorted(set(PLACEHOLDER.findall(text)) - values.keys())
    if unknown:
        raise SystemExit(f"submit.py: template uses unknown variables {unknown}")
    out = []
    for line in text.splitlines():
        filled = PLACEHOLDER.sub(lambda m: values[m.group(1)], line)
        if filled != line and (EMPTY_DIRECTIVE.match(filled) or not filled.strip()):
            continue
        out.append(filled)
    return "\n".join(out) + "\n"


def write_unique(out_dir: Path, stem: str, text: str) -> Path:
    """Write text to out_dir/stem.sbatch, adding -2, -3, ... if that name is taken."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = out_dir / (f"{stem}.sbatch" if n == 1 else f"{stem}-{n}.sbatch")
        try:
            with open(path, "x") as f:
                f.write(text)
            return path
        except FileExistsError:
            continue
    raise SystemExit(f"submit.py: could not find a free file name for {stem} in {out_dir}")


def pretty(path: Path) -> str:
    """Path relative to the current directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_names(args.model, train_args)
    except registry.ChoiceError as err:
        print(f"submit.py: error: {err}", file=sys.stderr)
        return 2
    tpl = template_path(args.template)
    is_sweep = "{{array}}" in tpl.read_text()
    values = build_values(args, train_args, is_sweep)
    script = render(tpl.read_text(), values)

    log_dir = (Path(values["chdir"]) / values["output"]).parent
    if "%" not in str(log_dir):
        log_dir.mkdir(parents=True, exist_ok=True)  # sbatch will not create it, the job would die silently
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_unique(Path(args.out_dir), f"{values['job_name']}-{stamp}", script)
    cmd = ["sbatch", "--parsable", str(path)]
    print(f"wrote {pretty(path)}")
    print(shlex.join(["sbatch", "--parsable", pretty(path)]))
    if args.dry_run:
        print("dry run: not submitted")
        return 0
    if shutil.which("sbatch") is None:
        print("submit.py: sbatch not found; run this on a SLURM login node, or use --dry-run", file=sys.stderr)
        return 1
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"submit.py: sbatch failed ({result.returncode}): {result.stderr.strip()}", file=sys.stderr)
        return result.returncode
    job_id = result.stdout.strip().split(";")[0]
    log = values["output"].replace("%x", values["job_name"]).replace("%j", job_id).replace("%A", job_id)
    print(f"submitted job {job_id} (log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
