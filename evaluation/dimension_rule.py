"""The text ``python evaluate.py --dimension N`` prints: the n > 8.33·ln N rule for one vocabulary size."""

from __future__ import annotations

import math

from lit_modules.components.embedding_dimension import closed_form_dim, entropy_bound, h_n, min_embedding_dim

TABLE_DIMS = (32, 64, 96, 128, 256, 512)


def dimension_rule_lines(vocabulary: int) -> list[str]:
    """The minimum embedding dimension for ``vocabulary`` = N words, the closed form beside it, and h_n.

    Raises:
        ValueError: N is not an integer of at least 2 (one line).
    """
    n = min_embedding_dim(vocabulary)
    lines = [
        f"vocabulary N = {vocabulary:,}: ln N = {math.log(vocabulary):.4f}",
        f"minimum embedding dimension (smallest n with 2·ln N + h_n < 0): {n}",
        f"closed form 8.33·ln N: {closed_form_dim(vocabulary):.1f}",
        "",
        f"{'n':>5}  {'h_n':>10}  {'h_n / n':>8}  {'2·ln N + h_n':>12}",
    ]
    for dim in sorted({*TABLE_DIMS, n}):
        value = h_n(dim)
        mark = "  <- minimum" if dim == n else ""
        lines.append(f"{dim:>5}  {value:>10.6g}  {value / dim:>8.5f}  {entropy_bound(vocabulary, dim):>12.4f}{mark}")
    return lines
