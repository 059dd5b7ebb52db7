"""A WGAN-GP training iteration written the way widely copied public implementations write it.

Used only by ``benchmarks/bench_wgan_gp.py`` as the baseline. Differences from ``lit_modules/wgan_gp.py``
(the maths is the same; the norm here is over the whole sample, the correct form):

- three separate critic passes per critic step: real, generated, interpolated;
- the generated batch is made with the generator's graph recorded and then detached;
- the penalty through ``autograd.grad(..., grad_outputs=ones)`` on the interpolates;
- in the generator step the critic's weights keep ``requires_grad``, so the backward pass also
  computes (and throws away) the critic's weight gradients.
"""

from __future__ import annotations

import torch
from torch import nn


def reference_critic_step(generator: nn.Module, critic: nn.Module, optimizer, real: torch.Tensor,
                          latent_dim: int, gp_weight: float = 10.0) -> float:
    optimizer.zero_grad()
    fake = generator(torch.randn(real.shape[0], latent_dim)).detach()
    loss = reference_critic_loss(critic, real, fake, gp_weight)
    loss.backward()
    optimizer.step()
    return loss.item()


def reference_critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                          gp_weight: float = 10.0) -> torch.Tensor:
    """The critic's loss, penalty included, for generated samples made already."""
    b = real.shape[0]
    d_real = critic(real).mean()
    d_fake = critic(fake).mean()
    alpha = torch.rand(b, 1, 1, 1) if real.dim() == 4 else torch.rand(b, 1)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    d_interpolates = critic(interpolates)
    gradients = torch.autograd.grad(outputs=d_interpolates, inputs=interpolates,
                                    grad_outputs=torch.ones_like(d_interpolates),
                                    create_graph=True, retain_graph=True, only_inputs=True)[0]
    penalty = gp_weight * ((gradients.view(b, -1).norm(2, dim=1) - 1) ** 2).mean()
    return d_fake - d_real + penalty


def reference_generator_step(generator: nn.Module, critic: nn.Module, optimizer, batch_size: int,
                             latent_dim: int) -> float:
    optimizer.zero_grad()
    loss = -critic(generator(torch.randn(batch_size, latent_dim))).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def reference_iteration(generator, critic, critic_opt, generator_opt, batches, latent_dim: int) -> None:
    """``len(batches)`` critic steps, then one generator step."""
    for real in batches:
        reference_critic_step(generator, critic, critic_opt, real, latent_dim)
    reference_generator_step(generator, critic, generator_opt, batches[0].shape[0], latent_dim)
