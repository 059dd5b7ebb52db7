"""Cut a printed text line into character boxes by column projection (SPEC §1, kexue.fm/archives/3856).

- :func:`cut_line`: SPEC's rule, boxes of about one line height (Chinese characters are square).
- :func:`ink_runs` and :func:`best_partition`: the reader's second look at a box the rule made of
  several ink runs. Latin letters and digits are narrower than a line height, so the rule glues
  them in pairs ("1997" becomes two boxes); the reader (``ocr.read``) scores every grouping of
  a box's runs with the CNN and keeps the most probable one.
"""

from __future__ import annotations

import math

import numpy as np

MIN_CONTRAST = 32  # grey levels between background and ink below which an image holds no text
MERGE_RATIO = 1.2  # a gap survives when the ink between its neighbours spans this many line heights


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean ink mask of a grey line image, dark text on light or light text on dark.

    :func:`ocr.render.ink_image` (Otsu's threshold, the border's class is the background) once the
    image has at least ``MIN_CONTRAST`` grey levels between its darkest and lightest pixels; a
    flatter image (blank paper, a uniform fill) has no ink rather than thresholded noise.

    Shape:
        - gray: ``(H, W)`` uint8 (or any real dtype on the 0–255 scale)
        - output: ``(H, W)`` bool
    """
    from ocr.render import ink_image

    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {gray.shape}")
    if gray.size == 0 or float(gray.max()) - float(gray.min()) < MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=bool)
    return ink_image(gray).astype(bool)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def keep_gaps(gaps: list[tuple[int, int]], height: float, ratio: float = MERGE_RATIO) -> list[tuple[int, int]]:
    r"""Drop the blank gaps that fall inside a character.

    ``gaps`` are the runs ``[start, end)`` of blank columns, with an empty gap at each ink edge of
    the line. Left to right, gap :math:`g_i` is kept when the ink from the last kept gap to the
    next gap spans more than 1.2 line heights, :math:`(g_{i+1}.start - g_k.end) / h > 1.2`: the
    gaps inside 川 or 仆 leave less than one character of ink between their neighbours, a gap
    between two characters more than one. This is SPEC §1's rule ((next − previous) / height >
    1.2) with two choices made explicit: distances run between ink edges rather than gap middles,
    so the letter spacing of the line does not shift the threshold, and "previous" is the last
    gap kept, so a character with several inner gaps (川) does not take the boundary after it
    away too.

    Shape:
        - gaps: ``(m,)`` increasing ``(start, end)`` pairs, first and last the line's ink edges
        - output: ``(k,)`` with ``k ≤ m``, first and last kept
    """
    if len(gaps) <= 2:
        return list(gaps)
    kept = [gaps[0]]
    for gap, nxt in zip(gaps[1:-1], gaps[2:]):
        if (nxt[0] - kept[-1][1]) / height > ratio:
            kept.append(gap)
    return kept + [gaps[-1]]


def cut_line(gray: np.ndarray) -> list[tuple[int, int]]:
    """Column boxes ``(x0, x1)`` (``x1`` exclusive) of the characters of one printed line.

    SPEC §1: runs of columns without ink are the cut candidates; :func:`keep_gaps` drops those
    inside characters; the ink between two kept gaps is split uniformly into
    ``round(width / height)`` pieces (touching characters), ``height`` being the line's ink height.
    Each box is trimmed to its ink columns; empty pieces are dropped.

    Shape:
        - gray: ``(H, W)`` grey image, dark text on light or the reverse
        - output: list of ``(x0, x1)``, left to right
    """
    mask = ink_mask(gray)
    rows, cols = mask.any(axis=1), mask.sum(axis=0)
    if not rows.any():
        return []
    ink_rows = np.flatnonzero(rows)
    height = float(ink_rows[-1] - ink_rows[0] + 1)
    ink_cols = np.flatnonzero(cols)
    left, right = int(ink_cols[0]), int(ink_cols[-1]) + 1
    inner = [(left + a, left + b) for a, b in _runs(cols[left:right] == 0)]
    kept = keep_gaps([(left, left), *inner, (right, right)], height)
    boxes: list[tuple[int, int]] = []
    for (_, start), (end, _) in zip(kept, kept[1:]):
        pieces = max(1, round((end - start) / height))
        bounds = np.linspace(start, end, pieces + 1)
        for x0, x1 in zip(bounds[:-1], bounds[1:]):
            box = _trim(cols, int(round(x0)), int(round(x1)))
            if box is not None:
                boxes.append(box)
    return boxes


def _trim(cols: np.ndarray, x0: int, x1: int) -> tuple[int, int] | None:
    """``(x0, x1)`` narrowed to the columns with ink; None if there are none."""
    inked = np.flatnonzero(cols[x0:x1])
    if inked.size == 0:
        return None
    return x0 + int(inked[0]), x0 + int(inked[-1]) + 1


def ink_runs(mask: np.ndarray, box: tuple[int, int]) -> list[tuple[int, int]]:
    """The runs ``(x0, x1)`` of ink columns inside one box of :func:`cut_line`, left to right.

    A box of a square character is usually one run; 川, 们 or two digits glued by the rule are
    several. ``mask`` is the line's :func:`ink_mask`, as :func:`cut_line` uses it.

    Shape:
        - mask: ``(H, W)`` bool
        - output: ``(m,)`` pairs, ``m >= 1`` when the box holds ink
    """
    x0, x1 = box
    return [(x0 + a, x0 + b) for a, b in _runs(mask[:, x0:x1].any(axis=0))]


def best_partition(log_prob: dict[tuple[int, int], float], n: int) -> list[tuple[int, int]]:
    r"""The grouping of ``n`` consecutive ink runs into characters with the highest joint score.

    A grouping splits runs ``0..n-1`` into consecutive groups :math:`[i, j)`; its score is
    :math:`\sum_{[i,j)} \log p_{ij}`, with :math:`p_{ij}` the CNN's top-1 probability of the crop
    spanning runs ``i..j-1`` (``log_prob[(i, j)]``; a missing entry is impossible). Dynamic
    programming over the end of the last group, :math:`S(j) = \max_i S(i) + \log p_{ij}`,
    :math:`S(0) = 0`; O(n²). Since every :math:`\log p \le 0`, a grouping into more characters
    must earn it: 川's three strokes read as "l" three times lose to 川 read whole, while "19"
    read whole as some character loses to "1" and "9" read clearly.

    Shape:
        - log_prob: ``{(i, j): float}`` for ``0 <= i < j <= n``
        - output: the groups ``[(i, j), ...]`` covering ``0..n`` in order
    """
    if n < 1:
        raise ValueError(f"need at least one ink run, got {n}")
    best = [0.0] + [-math.inf] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            score = best[i] + log_prob.get((i, j), -math.inf)
            if score > best[j]:
                best[j], back[j] = score, i
    if best[n] == -math.inf:
        raise ValueError("no grouping of the ink runs has a score")
    groups, j = [], n
    while j > 0:
        groups.append((back[j], j))
        j = back[j]
    return groups[::-1]
