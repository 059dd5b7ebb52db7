"""The WGAN-GP gradient penalty (Gulrajani et al., "Improved Training of Wasserstein GANs", 2017).

The critic is pushed towards unit gradient norm at points ``x̂`` on straight lines between real and
generated samples. The norm is taken over each whole flattened sample: a widely copied version
takes it over ``dim=1`` only (the channels), which for images penalises one norm per pixel and
is a different, wrong constraint. Su's variant (kexue.fm/archives/4439) penalises only norms above 1,
linearly: ``relu(‖∇D‖ − 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PENALTY_FORMS = ("two_sided", "one_sided")


def random_interpolates(
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Points on the lines between paired real and generated samples, one :math:`\epsilon` per sample.

    .. math::
        \hat x_b = \epsilon_b x_b + (1 - \epsilon_b) \tilde x_b, \quad \epsilon_b \sim U[0, 1]

    Args:
        real: real samples :math:`x`.
        fake: generated samples :math:`\tilde x` (detached from the generator by the caller).
        generator: random generator for :math:`\epsilon` (torch's global one if None).
        eps: the weights :math:`\epsilon_b` themselves, ``(B,)``, instead of drawing them.

    Returns:
        :math:`\hat x`, a leaf that requires grad (the penalty differentiates with respect to it).

    Shape:
        - real, fake: ``(B, *S)``
        - output: ``(B, *S)``
    """
    if real.shape != fake.shape:
        shapes = f"{tuple(real.shape)} and {tuple(fake.shape)}"
        raise ValueError(f"real and fake samples must have the same shape, got {shapes}")
    if eps is None:
        eps = torch.rand(real.shape[0], generator=generator, device=real.device)
    eps = eps.to(real.device, real.dtype).view((real.shape[0],) + (1,) * (real.dim() - 1))
    return (eps * real + (1 - eps) * fake).to(real.dtype).detach().requires_grad_(True)


def penalty_from_gradients(gradients: torch.Tensor, form: str = "two_sided") -> torch.Tensor:
    r"""Mean penalty on the per-sample gradient norm (unweighted), computed in fp32.

    .. math::
        \text{two\_sided: } \mathbb{E}_b\big[(\lVert g_b \rVert_2 - 1)^2\big] \qquad
        \text{one\_sided: } \mathbb{E}_b\big[\max(0, \lVert g_b \rVert_2 - 1)\big]

    where :math:`\lVert g_b \rVert_2` is the norm of the whole flattened sample's gradient.

    Shape:
        - gradients: ``(B, *S)``
        - output: scalar
    """
    if form not in PENALTY_FORMS:
        raise ValueError(f"penalty form must be one of {PENALTY_FORMS}, got '{form}'")
    norms = gradients.float().flatten(1).norm(2, dim=1)
    if form == "two_sided":
        return (norms - 1).pow(2).mean()
    return torch.relu(norms - 1).mean()


def gradient_penalty_at(
    critic_at_interpolates: torch.Tensor,
    interpolates: torch.Tensor,
    weight: float = 10.0,
    form: str = "two_sided",
    grad_scale: float | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""λ·E[f(‖∇D(x̂)‖₂)] from critic outputs computed already.

    Lets the caller evaluate the critic once on real, fake and :math:`\hat x` together. The
    gradient is taken with ``create_graph=True`` so that the penalty itself can be backpropagated
    to the critic's weights (a double backward).

    Under fp16 autocast the gradient of the (small) critic output can underflow to zero or
    overflow to inf. ``grad_scale`` multiplies the outputs before differentiating and divides
    the gradients after, as PyTorch's AMP notes do for gradient penalties (pass the GradScaler's
    current scale; bf16 and fp32 need none).

    Args:
        critic_at_interpolates: :math:`D(\hat x)`.
        interpolates: :math:`\hat x`, the tensor :math:`D(\hat x)` was computed from (requires grad).
        weight: :math:`\lambda`.
        form: ``two_sided`` (the paper) or ``one_sided`` (Su's).
        grad_scale: loss scale to apply around the gradient computation, or None.

    Shape:
        - critic_at_interpolates: ``(B,)`` or ``(B, 1)``
        - interpolates: ``(B, *S)``
        - output: scalar
    """
    outputs = critic_at_interpolates.sum()
    if grad_scale is not None:
        outputs = outputs * grad_scale
    (gradients,) = torch.autograd.grad(outputs, interpolates, create_graph=True)
    if grad_scale is not None:
        gradients = gradients / grad_scale
    return weight * penalty_from_gradients(gradients, form)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    form: str = "two_sided",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""WGAN-GP penalty with a critic pass of its own: :math:`\lambda\,\mathbb{E}[f(\lVert\nabla D(\hat x)\rVert_2)]`.

    ``f`` is ``(n − 1)²`` (``two_sided``) or ``relu(n − 1)`` (``one_sided``); see :func:`penalty_from_gradients`.

    Args:
        critic: the critic :math:`D`, mapping ``(B, *S)`` samples to ``(B,)`` or ``(B, 1)`` scores.
        real: real samples.
        fake: generated samples (detach them to keep the generator out of the critic's step).
        weight: :math:`\lambda` (10 in the paper).
        form: ``two_sided`` (the paper) or ``one_sided`` (Su's ``relu(‖∇D‖ − 1)``).
        generator: random generator for the interpolation weights.

    Shape:
        - real, fake: ``(B, *S)``
        - output: scalar
    """
    interpolates = random_interpolates(real, fake, generator)
    return gradient_penalty_at(critic(interpolates), interpolates, weight, form)
