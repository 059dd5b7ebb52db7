"""Best character sequence through a lattice of CNN candidates under a bigram model (SPEC §1)."""

from __future__ import annotations

import math
from typing import Protocol

Candidates = list[list[tuple[str, float]]]
PROB_FLOOR = 1e-12  # a candidate the CNN gives probability 0 stays possible, just very unlikely


class LanguageModel(Protocol):
    def log_prob(self, a: str, b: str) -> float: ...


def path_score(path: list[str], candidates: Candidates, lm: LanguageModel) -> float:
    r"""Log score of one path: :math:`\log W(s_1) + \sum_{i>1} \log P(s_i \mid s_{i-1}) + \log W(s_i)`."""
    weights = [dict(position) for position in candidates]
    score = sum(math.log(max(weights[i][c], PROB_FLOOR)) for i, c in enumerate(path))
    return score + sum(lm.log_prob(a, b) for a, b in zip(path, path[1:]))


def viterbi(candidates: Candidates, lm: LanguageModel | None) -> str:
    r"""The text that maximises :math:`W(s_1)\,P(s_2|s_1)\,W(s_2) \cdots P(s_n|s_{n-1})\,W(s_n)`.

    ``candidates[i]`` lists ``(character, W)`` for position ``i`` (the CNN's top-k with their
    probabilities). Dynamic programming in log space: for each candidate of each position, the
    best score of a path ending there and its predecessor; cost O(n k²). Without a language model
    (``lm=None``) every position keeps its most probable candidate.

    Shape:
        - candidates: ``n`` positions × ``k_i`` candidates
        - output: a string of ``n`` characters
    """
    if any(not position for position in candidates):
        raise ValueError("every position needs at least one candidate")
    if lm is None:
        return "".join(max(position, key=lambda cw: cw[1])[0] for position in candidates)
    if not candidates:
        return ""
    log_w = [[math.log(max(w, PROB_FLOOR)) for _, w in position] for position in candidates]
    score = list(log_w[0])
    back: list[list[int]] = []
    for i in range(1, len(candidates)):
        prev_chars = [c for c, _ in candidates[i - 1]]
        new_score, pointers = [], []
        for j, (char, _) in enumerate(candidates[i]):
            options = [score[p] + lm.log_prob(prev_chars[p], char) for p in range(len(prev_chars))]
            best = max(range(len(options)), key=options.__getitem__)
            new_score.append(options[best] + log_w[i][j])
            pointers.append(best)
        score, back = new_score, back + [pointers]
    j = max(range(len(score)), key=score.__getitem__)
    path = [j]
    for pointers in reversed(back):
        j = pointers[j]
        path.append(j)
    return "".join(candidates[i][j][0] for i, j in enumerate(reversed(path)))
