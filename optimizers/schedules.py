"""Learning-rate schedules as pure functions of the optimiser step, for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int | None, min_factor: float = 0.0) -> float:
    r"""Linear warm-up, then half a cosine down to ``min_factor``: the factor the base rate is multiplied by.

    .. math::
        f(t) = \begin{cases}
            (t + 1) / w & t < w \\
            m + (1 - m)\,\tfrac12\bigl(1 + \cos(\pi\,\tfrac{t - w}{T - w})\bigr) & w \le t < T \\
            m & t \ge T
        \end{cases}

    with warm-up steps w, total steps T and floor m. The first step already trains at 1/w of the
    rate, not at zero. ``total_steps=None`` (an unbounded run) stays at 1 after the warm-up.

    Args:
        step: optimiser steps taken so far (t).
        warmup_steps: w ≥ 0.
        total_steps: T, or None.
        min_factor: m in [0, 1].
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps is None:
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
