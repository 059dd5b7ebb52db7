"""A skip-gram model with known parameters, to draw a corpus from whose true capacity is known.

p(i, j) = exp⟨u_i, v_j⟩ / Z over a vocabulary of N words (SPEC §8), with the 2N vectors drawn
uniformly on the sphere of radius ``radius`` in ``dim`` = n* dimensions (√n* is the SPEC's scale;
a smaller radius gives a flatter, higher-entropy model). (centre, context) pairs are drawn from
this joint distribution directly, so a skip-gram model of dimension ≥ n* can fit them exactly and
the conditional entropy H(context | centre) is the best held-out cross-entropy any model can reach.
"""

from __future__ import annotations

import math

import torch


class GroundTruthSkipGram:
    """The generating model: input vectors U and output vectors V, both ``(N, dim)``.

    Args:
        vocab_size: N, at least 2.
        dim: n*, the true dimension.
        radius: length of every vector (default √dim).
        seed: fixes U and V.
        chunk: rows of the N×N score matrix computed at a time (bounds memory at chunk·N floats).
    """

    def __init__(self, vocab_size: int, dim: int, radius: float | None = None, seed: int = 0, chunk: int = 1024):
        if vocab_size < 2:
            raise ValueError(f"the synthetic vocabulary needs N ≥ 2 words, got {vocab_size}")
        if dim < 1:
            raise ValueError(f"the true dimension must be at least 1, got {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.radius = math.sqrt(dim) if radius is None else float(radius)
        u, v = torch.randn(2, vocab_size, dim, generator=generator, dtype=torch.float64)
        self.u = self.radius * u / u.norm(dim=1, keepdim=True)
        self.v = self.radius * v / v.norm(dim=1, keepdim=True)
        self.chunk = chunk
        # log Σ_j exp⟨u_i, v_j⟩ for every centre i: the conditional's normaliser
        self.row_lse = torch.cat([(self.u[s : s + chunk] @ self.v.T).logsumexp(dim=1) for s in self._starts()])
        self.log_z = self.row_lse.logsumexp(dim=0)

    def _starts(self) -> range:
        return range(0, len(self.u), self.chunk)

    @property
    def vocab_size(self) -> int:
        return len(self.u)

    def centre_log_probs(self) -> torch.Tensor:
        """log p(i): the marginal of the centre word. Shape ``(N,)``."""
        return self.row_lse - self.log_z

    def sample_pairs(self, num_pairs: int, generator: torch.Generator) -> torch.Tensor:
        """``num_pairs`` (centre, context) pairs drawn from p(i, j), as an ``(num_pairs, 2)`` int64 tensor.

        The centre comes from its marginal, the context from p(j | i) ∝ exp⟨u_i, v_j⟩ by inverting the
        conditional's CDF: for a chunk of centres the CDF rows, shifted by the row number, form one
        increasing sequence, so one ``searchsorted`` of (row + uniform) finds every context. The cost is
        O(chunk·N) per chunk of the vocabulary plus O(log) per pair, not O(N) per pair.
        """
        centres = torch.multinomial(self.centre_log_probs().exp(), num_pairs, replacement=True, generator=generator)
        uniform = torch.rand(num_pairs, generator=generator, dtype=torch.float64).clamp_(min=1e-12)
        contexts = torch.empty_like(centres)
        n = self.vocab_size
        for start in self._starts():
            rows = slice(start, start + self.chunk)
            chosen = torch.nonzero((centres >= start) & (centres < start + self.chunk)).squeeze(1)
            if len(chosen) == 0:
                continue
            cdf = ((self.u[rows] @ self.v.T) - self.row_lse[rows, None]).exp().cumsum(dim=1)
            cdf = cdf / cdf[:, -1:]  # each row ends at exactly 1
            shifted = (cdf + torch.arange(len(cdf), dtype=cdf.dtype)[:, None]).flatten()
            position = torch.searchsorted(shifted, (centres[chosen] - start).to(cdf.dtype) + uniform[chosen])
            contexts[chosen] = (position % n).clamp_(max=n - 1)
        return torch.stack((centres, contexts), dim=1)

    def conditional_entropy(self) -> float:
        """H(context | centre) in nats: the lowest expected held-out cross-entropy of any model."""
        total = torch.zeros((), dtype=torch.float64)
        log_pi = self.centre_log_probs()
        for start in self._starts():
            rows = slice(start, start + self.chunk)
            log_cond = (self.u[rows] @ self.v.T) - self.row_lse[rows, None]
            total += (log_pi[rows].exp()[:, None] * log_cond.exp() * -log_cond).sum()
        return float(total)

    def joint_entropy(self) -> float:
        """H(centre, context) in nats: the entropy the n > 8.33·ln N rule bounds (2·ln N + h_n for radius √n)."""
        log_pi = self.centre_log_probs()
        return float(-(log_pi.exp() * log_pi).sum()) + self.conditional_entropy()
