"""Wasserstein GAN losses (Arjovsky et al. 2017; Gulrajani et al., "Improved Training of Wasserstein GANs", 2017).

The critic ``D`` is a real-valued function (no sigmoid at its output): through the
Kantorovich–Rubinstein duality, max over 1-Lipschitz ``D`` of ``E[D(x)] − E[D(G(z))]`` is the
Wasserstein-1 distance between the data and the generator's distribution.
"""

from __future__ import annotations

import torch


def critic_loss(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    r"""The critic's loss, to be minimised (penalty not included).

    .. math::
        L_D = \mathbb{E}[D(\tilde x)] - \mathbb{E}[D(x)]

    Args:
        critic_real: critic outputs on real samples :math:`D(x)`.
        critic_fake: critic outputs on generated samples :math:`D(\tilde x)`.

    Returns:
        Scalar loss.

    Shape:
        - critic_real: ``(B,)`` or ``(B, 1)``
        - critic_fake: ``(B',)`` or ``(B', 1)``
    """
    return critic_fake.mean() - critic_real.mean()


def generator_loss(critic_fake: torch.Tensor) -> torch.Tensor:
    r"""The generator's loss, to be minimised.

    .. math::
        L_G = -\mathbb{E}[D(G(z))]

    Shape:
        - critic_fake: ``(B,)`` or ``(B, 1)``
    """
    return -critic_fake.mean()


def wasserstein_estimate(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    r"""The critic's estimate of the Wasserstein-1 distance, :math:`\mathbb{E}[D(x)] - \mathbb{E}[D(\tilde x)]`.

    It is ``-critic_loss``; it falls as the generator improves (a rough, critic-dependent progress measure).

    Shape:
        - critic_real: ``(B,)`` or ``(B, 1)``
        - critic_fake: ``(B',)`` or ``(B', 1)``
    """
    return critic_real.mean() - critic_fake.mean()
