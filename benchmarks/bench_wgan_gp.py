"""Time of one WGAN-GP generator iteration (n_critic critic steps + 1 generator step), ours and a public-style one.

Run from the repository root::

    python -m benchmarks.bench_wgan_gp                        # batch 64, 28×28, writes benchmarks/results/wgan_gp.md
    python -m benchmarks.bench_wgan_gp --quick --out /tmp/w.md   # seconds, for a smoke test

Workload: the ``wgan_gp`` conv pair (width 64, latent 128, no critic norm) on 28×28×1 images,
batch 64, n_critic 5, Adam; CPU. Every variant starts from the same weights. Variants:

- ``ours``: :meth:`lit_modules.wgan_gp.WGANGP.critic_objective` (one critic pass each over real,
  generated and interpolated samples; fakes made without a graph; the critic's activations are
  :class:`~lit_modules.components.gan_networks.CriticReLU`) and ``generator_objective`` with the
  critic's weights switched off, as ``training_step`` runs them (without the Trainer around them);
- ``reference``: :mod:`benchmarks.baselines.wgan_reference` on the same networks with torch's own
  ``nn.LeakyReLU`` in the critic, as public implementations build it (three critic passes, fakes made
  with a graph and detached, ``autograd.grad`` with ``grad_outputs``, the interpolates' own gradient
  accumulated, the critic's weight gradients computed in the generator step);
- ``ours_torch_activation``: ours with torch's ``nn.LeakyReLU`` in the critic: the difference to
  ``ours`` is what the penalty's zero second derivatives cost when they flow back through the
  interpolates' forward pass;
- ``ours_no_penalty``: ours with the penalty left out (one pass over real and generated, no
  ``autograd.grad``): the difference to ``ours`` is what the penalty's gradient and double backward cost;
- ``generator_forward``: only the ``n_critic`` generator passes that make the critic steps' fakes;
- ``ours_critic_steps`` and ``reference_critic_steps``: only the ``n_critic`` critic steps (losses,
  backward, Adam) on fakes made beforehand: the part of the iteration where the two differ, without
  the generator's transposed convolutions that both run alike.

Time is this process's CPU time (``time.process_time``) with one intra-op thread: on a shared
machine, wall time mostly measures the other jobs. Each round runs every variant once, in an order
rotated from round to round; the speed-up is the median over rounds of the reference's time
divided by ours in the same round, and the fastest and median times are shown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.baselines.wgan_reference import reference_critic_loss, reference_iteration
from benchmarks.machine import load_average, machine_description
from lit_modules.components.gan_networks import with_torch_activations
from lit_modules.wgan_gp import WGANGP
from losses.wasserstein import critic_loss

FULL = {"batch": 64, "image": 28, "width": 64, "latent": 128, "n_critic": 5, "rounds": 8}
QUICK = {"batch": 8, "image": 8, "width": 8, "latent": 16, "n_critic": 2, "rounds": 2}
VARIANTS = ("ours", "reference", "ours_torch_activation", "ours_no_penalty", "generator_forward",
            "ours_critic_steps", "reference_critic_steps")


def make(sizes: dict, torch_activations: bool = False) -> tuple[WGANGP, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = WGANGP(input_shape=(1, sizes["image"], sizes["image"]), latent_dim=sizes["latent"],
                   width=sizes["width"], n_critic=sizes["n_critic"], ema_decay=0.0)
    if torch_activations:
        model.critic = with_torch_activations(model.critic)
    adam = dict(lr=1e-4, betas=(0.0, 0.9))
    critic_opt = torch.optim.Adam(model.critic.parameters(), **adam)
    return model, critic_opt, torch.optim.Adam(model.generator.parameters(), **adam)


def ours_iteration(model: WGANGP, critic_opt, generator_opt, batches, penalty: bool = True) -> None:
    latent = model.hparams.latent_dim
    for real in batches:
        b = real.shape[0]
        if penalty:
            loss = model.critic_objective(real, torch.randn(b, latent), torch.rand(b))[0]
        else:
            with torch.no_grad():
                fake = model.generator(torch.randn(b, latent))
            loss = critic_loss(model.critic(real), model.critic(fake))
        critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        critic_opt.step()
    model.critic.requires_grad_(False)
    loss = model.generator_objective(torch.randn(batches[0].shape[0], latent))
    generator_opt.zero_grad(set_to_none=True)
    loss.backward()
    generator_opt.step()
    model.critic.requires_grad_(True)


def critic_steps(model: WGANGP, critic_opt, batches, fakes, reference: bool = False) -> None:
    """The critic steps alone, on fakes made beforehand (ours, or the reference's loss)."""
    for real, fake in zip(batches, fakes):
        if reference:
            loss = reference_critic_loss(model.critic, real, fake)
        else:
            loss = model.critic_objective_on(real, fake, torch.rand(real.shape[0]))[0]
        critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        critic_opt.step()


def generate_fakes(model: WGANGP, batches) -> None:
    """Only the fakes the critic steps need (no gradient): the generator's share of an iteration."""
    with torch.no_grad():
        for real in batches:
            model.generator(torch.randn(real.shape[0], model.hparams.latent_dim))


def measure(sizes: dict) -> dict[str, list[float]]:
    batches = [torch.rand(sizes["batch"], 1, sizes["image"], sizes["image"]) for _ in range(sizes["n_critic"])]
    torch_activations = ("reference", "ours_torch_activation", "reference_critic_steps")
    fakes = [torch.rand_like(real) for real in batches]
    setups = {name: make(sizes, torch_activations=name in torch_activations) for name in VARIANTS}
    run = {
        "ours": lambda m, c, g: ours_iteration(m, c, g, batches),
        "reference": lambda m, c, g: reference_iteration(m.generator, m.critic, c, g, batches, sizes["latent"]),
        "ours_torch_activation": lambda m, c, g: ours_iteration(m, c, g, batches),
        "ours_no_penalty": lambda m, c, g: ours_iteration(m, c, g, batches, penalty=False),
        "generator_forward": lambda m, c, g: generate_fakes(m, batches),
        "ours_critic_steps": lambda m, c, g: critic_steps(m, c, batches, fakes),
        "reference_critic_steps": lambda m, c, g: critic_steps(m, c, batches, fakes, reference=True),
    }
    times: dict[str, list[float]] = {name: [] for name in run}
    for name in run:  # warm-up
        run[name](*setups[name])
    for r in range(sizes["rounds"]):
        for name in VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]:  # rotated order
            start = time.process_time()
            run[name](*setups[name])
            times[name].append(time.process_time() - start)
    return times


def render(times: dict[str, list[float]], sizes: dict, quick: bool) -> str:
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    reference = times["reference"]
    ratio = {name: statistics.median(r / t for r, t in zip(reference, values)) for name, values in times.items()}
    penalty = median["ours"] - median["ours_no_penalty"]
    zeros = median["ours_torch_activation"] - median["ours"]
    fakes = median["generator_forward"]
    rows = [f"| `{name}` | {best[name] * 1e3:.0f} | {median[name] * 1e3:.0f} | {ratio[name]:.2f}× |"
            for name in VARIANTS[:5]]
    critic_ratio = statistics.median(r / t for r, t in zip(times["reference_critic_steps"], times["ours_critic_steps"]))
    rows += [f"| `{name}` | {best[name] * 1e3:.0f} | {median[name] * 1e3:.0f} | "
             f"{critic_ratio if name == 'ours_critic_steps' else 1.0:.2f}× (of `reference_critic_steps`) |"
             for name in VARIANTS[5:]]
    return "\n".join([
        "## wgan_gp: one generator iteration",
        "",
        f"Batch {sizes['batch']}, {sizes['image']}×{sizes['image']}×1, conv pair of width {sizes['width']}, "
        f"n_critic {sizes['n_critic']} (one iteration = {sizes['n_critic']} critic steps + 1 generator step), CPU with "
        f"{torch.get_num_threads()} thread(s), {sizes['rounds']} rounds{' (quick sizes)' if quick else ''}, "
        "CPU time of the benchmark process. `python -m benchmarks.bench_wgan_gp`. "
        f"Machine load while measuring (1/5/15 min): {load_average()}.",
        "",
        "| variant | fastest (CPU ms) | median (CPU ms) | reference ÷ this (median over rounds) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Where our iteration's time goes (medians): making the critic steps' fakes {fakes / median['ours']:.0%} "
        f"(`generator_forward`), the penalty's input gradient and double backward {penalty / median['ours']:.0%} "
        f"(`ours` − `ours_no_penalty`), everything else (critic forward and backward, the generator step with its "
        f"forward and backward, Adam) {1 - (fakes + penalty) / median['ours']:.0%}: the generator's transposed "
        "convolutions dominate, and they are the same work in every variant. With torch's `nn.LeakyReLU` in the "
        f"critic our iteration takes {zeros * 1e3:.0f} ms more ({zeros / median['ours']:.0%}; "
        "`ours_torch_activation`): "
        "its declared zero second derivative sends zeros back through the interpolates' whole forward pass. "
        "`ours` also gives the interpolates a critic pass of their own (through a joint pass the double "
        "backward would run over every set in it), scores real and generated samples in two passes on a CPU "
        "(one joint pass measured no faster here; it is the default on GPUs), makes the critic's fakes without "
        "recording the generator's graph, and skips the critic's weight gradients in the generator step.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out", default="benchmarks/results/wgan_gp.md", help="markdown file to write")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    text = render(measure(sizes), sizes, args.quick)
    print(f"{machine_description()}\n\n{text}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
