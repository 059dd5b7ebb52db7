"""Gauss–Newton steps with SVRG for linear autoencoders x̂ = x C D (C: n×k encoder, D: k×n decoder).

Why not Adam. The loss L(C, D) = ‖X − X C D‖² / (m n) has, at its optimum, one slow direction per
pair of neighbouring singular directions: turning span(Dᵀ) from v_k towards v_{k+1} changes L by
∝ (λ_k − λ_{k+1}) θ², λ_i = σ_i² / m, while a stable step size is bounded by λ_1. First-order methods
therefore need O(λ_1 / (λ_k − λ_{k+1})) steps to find the top-k subspace; on Fashion-MNIST at k = 32
that is λ_1 / (λ_32 − λ_33) ≈ 1.3·10⁵ (σ_32² / σ_33² = 1.0047), and Adam ends 50 epochs with the
32nd direction still ~84° away although the reconstruction error is within 0.1 % of the SVD's.

Gauss–Newton. L is quadratic in each factor. With Σ = XᵀX / m, A = Cᵀ Σ C (k×k, the code covariance)
and B = Cᵀ Σ (k×n):

- decoder: ∇_D L = (2/n)(A D − B), Gauss–Newton matrix (2/n) A ⊗ I, so the step is
  D ← D − η A⁻¹ (A D − B); with η = 1 it is the least-squares decoder for the current encoder;
- encoder: ∇_C L = (2/n) Σ (C D − I) Dᵀ, Gauss–Newton matrix (2/n) Σ ⊗ D Dᵀ; the Newton direction
  Σ⁻¹ ∇_C L (D Dᵀ)⁻¹ · n/2 = C − Dᵀ (D Dᵀ)⁻¹ does not depend on the data at all.

Alternating full steps are subspace iteration on Σ: the slow direction now contracts by
λ_{k+1} / λ_k per step instead of by 1 − η(λ_k − λ_{k+1}).

Mini-batches. A is estimated by an exponential moving average of the batches' code covariances
(a preconditioner needs no more). Each batch's A_batch reaches the optimiser as the gradient of a
*covariance probe*: a k×k parameter P₀ that stays zero and enters the loss as ⟨P₀, A_batch⟩. The
term adds nothing to the loss, its gradient is A_batch, and data parallelism averages it over the
ranks in the same all-reduce as the decoder's gradient (no collective of its own), as gradient
accumulation averages it over micro-batches. The decoder gradient is variance-reduced (SVRG, Johnson & Zhang
2013): with a snapshot (C̃, D̃) and its full-data gradient g̃ taken at every epoch start,
v = ∇_batch(C, D) − ∇_batch(C̃, D̃) + g̃, which is unbiased and whose noise vanishes as (C, D)
approaches the snapshot; without it, the batch noise in the slow direction (≈ λ_k / √b) is far
larger than the gap it must resolve. Heavy-ball momentum μ on the decoder step shortens the
slow direction's time constant from 1 / (1 − λ_{k+1}/λ_k) towards its square root.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

# D Dᵀ only needs to stay invertible: a damping like the decoder's would bias C away from the
# pseudo-inverse of D (and the reconstructions away from the projection) wherever D is small.
ENCODER_DAMPING = 1e-6


def code_covariance(codes: torch.Tensor) -> torch.Tensor:
    """A_batch = zᵀ z / b, the batch estimate of Cᵀ Σ C, in float32 at least (it is solved against).

    Shape:
        codes: (b, k), z = x C. Returns (k, k).
    """
    codes = codes.to(torch.promote_types(codes.dtype, torch.float32))
    with torch.autocast(codes.device.type, enabled=False):
        return codes.T @ codes / codes.shape[0]


def decoder_gradient(inputs: torch.Tensor, encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """(A D − B) over a batch: ((zᵀ z) D − zᵀ x) / b with z = x C, i.e. (n/2) ∇_D of the mean squared error.

    Grouped so that only x C and zᵀ x touch all b·n entries (zᵀ (z D − x) would also form z D).

    Shape:
        inputs: (b, n); encoder: (n, k); decoder: (k, n). Returns (k, n).
    """
    codes = inputs @ encoder
    return ((codes.T @ codes) @ decoder - codes.T @ inputs) / inputs.shape[0]


def damped(matrix: torch.Tensor, damping: float) -> torch.Tensor:
    """M + δ · mean(diag M) · I: a damping relative to the matrix's own scale.

    Shape:
        matrix: (k, k). Returns (k, k).
    """
    scale = matrix.diagonal().mean()
    return matrix + damping * scale * torch.eye(len(matrix), dtype=matrix.dtype, device=matrix.device)


def decoder_direction(code_cov: torch.Tensor, gradient: torch.Tensor, damping: float) -> torch.Tensor:
    """Gauss–Newton direction for the decoder, (A + δ)⁻¹ (A D − B).

    Shape:
        code_cov: A (k, k); gradient: A D − B (k, n). Returns (k, n).
    """
    return torch.linalg.solve(damped(code_cov, damping), gradient)


def encoder_direction(encoder: torch.Tensor, decoder: torch.Tensor, damping: float) -> torch.Tensor:
    """Gauss–Newton (here: Newton) direction for the encoder, C − Dᵀ (D Dᵀ + δ)⁻¹.

    A full step makes C the pseudo-inverse of D, the optimal encoder for a given decoder.

    Shape:
        encoder: C (n, k); decoder: D (k, n). Returns (n, k).
    """
    return encoder - torch.linalg.solve(damped(decoder @ decoder.T, damping), decoder).T


class LinearAEGaussNewton(torch.optim.Optimizer):
    """Gauss–Newton steps for linear autoencoders' (encoder, decoder, covariance probe); see the module docstring.

    Per autoencoder and step, with v the decoder's gradient in units of (A D − B) (``decoder.grad · n/2``;
    the SVRG control variate is expected to be in it already) and A_batch the probe's gradient:

        P ← ρ P + (1 − ρ) A_batch
        u ← μ u + (P + δ)⁻¹ v
        D ← D − η u
        C ← C − η (C − Dᵀ (D Dᵀ + δ_C)⁻¹)      (δ_C = ``ENCODER_DAMPING``)

    The encoder needs no gradient, and the probe is never changed.

    Args:
        triples: (encoder C of shape (n, k), decoder D of shape (k, n), probe of shape (k, k)) per autoencoder.
        lr: η; 1 with no momentum is a full step.
        momentum: μ, heavy-ball momentum of the decoder step.
        ema: ρ, decay of the moving average of the code covariance.
        damping: δ of the decoder's preconditioner, relative to the mean diagonal of P.
    """

    def __init__(
        self,
        triples: Sequence[tuple[nn.Parameter, nn.Parameter, nn.Parameter]],
        lr: float = 0.1,
        momentum: float = 0.9,
        ema: float = 0.99,
        damping: float = 1e-3,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must lie in [0, 1), got {ema}")
        for encoder, decoder, probe in triples:
            k = encoder.shape[-1]
            if encoder.dim() != 2 or decoder.shape != encoder.T.shape or probe.shape != (k, k):
                raise ValueError(f"expected an encoder (n, k), a decoder (k, n) and a probe (k, k), got "
                                 f"{tuple(encoder.shape)}, {tuple(decoder.shape)} and {tuple(probe.shape)}")
        defaults = {"lr": lr, "momentum": momentum, "ema": ema, "damping": damping}
        super().__init__([{"params": list(triple)} for triple in triples], defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            encoder, decoder, probe = group["params"]
            if decoder.grad is None:
                continue
            if probe.grad is None:
                raise RuntimeError("the covariance probe has no gradient: add <probe, A_batch> to the loss "
                                   "(see LinearAE.training_losses)")
            state = self.state[decoder]
            batch_cov = probe.grad.to(decoder.dtype)
            if "code_cov" in state:
                state["code_cov"].mul_(group["ema"]).add_(batch_cov, alpha=1 - group["ema"])
            else:
                state["code_cov"] = batch_cov.clone()
            gradient = decoder.grad * (decoder.shape[1] / 2)
            direction = decoder_direction(state["code_cov"], gradient, group["damping"])
            if "momentum_buffer" in state:
                state["momentum_buffer"].mul_(group["momentum"]).add_(direction)
            else:
                state["momentum_buffer"] = direction.clone()
            decoder.sub_(state["momentum_buffer"], alpha=group["lr"])
            encoder.sub_(encoder_direction(encoder, decoder, ENCODER_DAMPING), alpha=group["lr"])
        return loss


class SVRGSnapshot(nn.Module):
    """The snapshot (C̃, D̃) of one linear autoencoder and its full-data decoder gradient g̃ = Ã D̃ − B̃.

    Kept as buffers, so checkpoints carry it and a run resumed mid-epoch continues with the same one.
    """

    def __init__(self, n_features: int, k: int) -> None:
        super().__init__()
        self.register_buffer("encoder", torch.zeros(n_features, k))
        self.register_buffer("decoder", torch.zeros(k, n_features))
        self.register_buffer("gradient", torch.zeros(k, n_features))

    @torch.no_grad()
    def refresh(self, encoder: torch.Tensor, decoder: torch.Tensor, batches: Iterable[torch.Tensor]) -> None:
        """Take (C, D) as the snapshot and compute g̃ = Σ_batches b · decoder_gradient / m over ``batches``."""
        self.encoder.copy_(encoder)
        self.decoder.copy_(decoder)
        total, count = torch.zeros_like(self.gradient, dtype=torch.float64), 0
        for x in batches:
            total += decoder_gradient(x, self.encoder, self.decoder).double() * len(x)
            count += len(x)
        if count == 0:
            raise ValueError("the SVRG snapshot needs at least one training batch")
        self.gradient.copy_(total / count)

    def control_variate(self, inputs: torch.Tensor) -> torch.Tensor:
        """g̃ − ∇_batch(C̃, D̃), in units of (A D − B); add it to the batch gradient at (C, D).

        Shape:
            inputs: (b, n). Returns (k, n).
        """
        return self.gradient - decoder_gradient(inputs, self.encoder, self.decoder)
