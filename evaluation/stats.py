"""Confidence intervals for the proportions a report shows (accuracies, overlap-test success rates)."""

from __future__ import annotations

import math

from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion p̂ = successes / trials.

    Equation (z the two-sided normal quantile of ``confidence``, n = trials)::

        centre ± half = (p̂ + z²/2n ± z·√(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)

    Unlike p̂ ± z·√(p̂(1 − p̂)/n) it stays inside [0, 1] and does not shrink to nothing at p̂ = 1,
    which matters for a 99 % accuracy on a few hundred test images. Computed by
    ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``.

    Args:
        successes: correct answers, 0..trials.
        trials: number of test cases; 0 gives ``(nan, nan)``.
        confidence: coverage of the interval.

    Returns:
        ``(low, high)``.
    """
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in 0..{trials}, got {successes}")
    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def is_proportion_metric(key: str) -> bool:
    """Whether a logged metric is a share of correct answers (``test/acc``, ``val/top1_acc``, ...)."""
    return "acc" in key.rsplit("/", 1)[-1]


def percent_with_ci(share: float, trials: int | None, confidence: float = CONFIDENCE) -> str:
    """``"98.33 % (96.4–99.2)"``: a share of ``trials`` with its Wilson interval (just the share without trials)."""
    if share is None or math.isnan(share):
        return "–"
    text = f"{100 * share:.2f} %"
    if not trials:
        return text
    low, high = wilson_interval(round(share * trials), trials, confidence)
    return f"{text} ({100 * low:.1f}–{100 * high:.1f})"
