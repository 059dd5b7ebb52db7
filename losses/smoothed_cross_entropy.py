"""Label-smoothed cross-entropy (Su Jianlin, kexue.fm/archives/4493, 2017) with optional class weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_mean(per_sample: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    r"""Mean over the batch of per-sample losses, each scaled by the weight of its class.

    .. math::
        L = \frac1B \sum_b w_{y_b}\, \ell_b

    This is how Keras applies ``class_weight`` (a plain mean, not divided by :math:`\sum_b w_{y_b}`
    as ``F.cross_entropy(weight=...)`` does), so weights normalised to mean 1 keep the loss scale.

    Shape:
        - per_sample: ``(B,)``
        - targets: ``(B,)`` integer
        - class_weights: ``(C,)`` or ``None``
    """
    if class_weights is not None:
        per_sample = per_sample * class_weights.to(per_sample.dtype)[targets.long()]
    return per_sample.mean()


def smoothed_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    epsilon: float = 0.1,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Cross-entropy against the one-hot target mixed with cross-entropy against the uniform distribution.

    .. math::
        \ell_b = (1 - \varepsilon)\,\big(-\log p_{b,y_b}\big)
                 + \varepsilon\,\Big(-\frac1C \sum_{k=1}^{C} \log p_{b,k}\Big),
        \qquad p_b = \operatorname{softmax}(z_b)

    ``epsilon = 0`` is plain cross-entropy. Computed from ``log_softmax`` in fp32 so that large
    logits neither overflow nor lose the smoothing term.

    Args:
        logits: unnormalised class scores :math:`z`.
        targets: class indices :math:`y`.
        epsilon: weight :math:`\varepsilon` of the uniform target, in ``[0, 1]``.
        class_weights: optional per-class weights (see :func:`weighted_mean`).

    Returns:
        Scalar loss.

    Shape:
        - logits: ``(B, C)``
        - targets: ``(B,)`` integer
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    log_p = F.log_softmax(logits.float(), dim=1)
    nll = -log_p.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    uniform = -log_p.mean(dim=1)
    return weighted_mean((1.0 - epsilon) * nll + epsilon * uniform, targets, class_weights)
