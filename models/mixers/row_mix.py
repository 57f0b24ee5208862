"""Per-token weighted sums of a few source rows, the operation every depth mixer spends its forward in:
out[token, r] = sum_i W[token, r, i] v[token, i] for rows r (the consumers) and sources i < n.

Without autograd this runs as an embedding-bag lookup. The sources' buffer, seen as a table of d-wide rows, is
summed per (token, row) bag with per-sample weights W, reading each source row in place. On CPU that is
1.3-1.9x faster than the batched matmul `W @ v`, whose thousands of [rows x n] @ [n x d] products are each too
small for a GEMM kernel (`python bench/row_mix.py`). Under autograd it stays the matmul: the lookup's gradient with
respect to a strided table would go through as_strided's slow backward.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F

from .tracking import tracked


def mix_rows(weights: torch.Tensor, sources: torch.Tensor, rows_first: bool = False) -> torch.Tensor:
    """weights [batch, tokens, rows, n] @ sources [batch, tokens, n, d] -> [batch, tokens, rows, d], or with
    rows_first [rows, batch, tokens, d], where each row is contiguous: a sublayer reading a strided input pays for
    it in its norm."""
    if not tracked(weights, sources) and weights.dtype == sources.dtype:
        table = _row_table(sources)
        if table is not None:
            return _bag_sums(weights, *table, rows_first)
    if weights.shape[-1] <= 2:  # batched products this small cost several times more than scaling and adding
        out = weights[..., :1] * sources[..., None, 0, :]
        if weights.shape[-1] == 2:
            out.addcmul_(weights[..., 1:], sources[..., None, 1, :])
    else:
        out = weights @ sources
    return out.movedim(-2, 0) if rows_first else out


def _row_table(sources: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    """sources [..., n, d] as (table [rows, d], rows between consecutive tokens), without copying; None if the
    layout does not allow it (a d axis that is not contiguous, or token axes that do not flatten to one stride)."""
    n, d = sources.shape[-2:]
    if sources.stride(-1) != 1 or (n > 1 and sources.stride(-2) != d) or sources.numel() == 0:
        return None
    try:
        flat = sources.view(-1, n, d)  # [tokens, n, d]
    except RuntimeError:
        return None
    tokens = flat.shape[0]
    step = flat.stride(0) // d if tokens > 1 else n
    if tokens > 1 and (flat.stride(0) % d or step < n):
        return None
    return flat.as_strided(((tokens - 1) * step + n, d), (d, 1)), step


def _bag_sums(weights: torch.Tensor, table: torch.Tensor, step: int, rows_first: bool) -> torch.Tensor:
    *lead, rows, n = weights.shape
    tokens = (table.shape[0] - n) // step + 1
    indices, offsets = _BAGS.get(tokens, rows, n, step, rows_first, table.device)
    # detached: with a tensor that requires grad (as inside an autograd Function's forward), even under no_grad
    # the lookup takes its differentiable variant, which also builds bag bookkeeping and runs 1.7x slower
    samples = (weights.detach().movedim(-2, 0) if rows_first else weights.detach()).reshape(-1)
    out = F.embedding_bag(indices, table.detach(), offsets, mode="sum", per_sample_weights=samples)
    if rows_first:
        return out.view(rows, *lead, table.shape[1])  # [rows, batch, tokens, d]
    return out.view(*lead, rows, table.shape[1])  # [batch, tokens, rows, d]


def _bags(tokens: int, rows: int, n: int, step: int, rows_first: bool,
          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bag (token, row), or (row, token) with rows_first, holds table rows token * step + i for i < n."""
    starts = torch.arange(tokens, device=device) * step  # [tokens]
    per_token = starts[:, None] + torch.arange(n, device=device)  # [tokens, n]
    indices = per_token.expand(rows, tokens, n) if rows_first else per_token[:, None].expand(tokens, rows, n)
    return indices.reshape(-1), torch.arange(0, tokens * rows * n, n, device=device)


class _BagCache:
    """The index tensors of recent shapes, least recently used dropped first beyond `budget` bytes. A forward pass
    meets a few dozen shapes; rebuilding one costs about 2 * rows / d of its lookup's own memory traffic."""

    def __init__(self, budget: int = 32 << 20):
        self.budget = budget
        self.kept: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, *key) -> tuple[torch.Tensor, torch.Tensor]:
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
        bags = _bags(*key)
        with self.lock:
            self.kept[key] = bags
            while len(self.kept) > 1 and self._bytes() > self.budget:
                self.kept.popitem(last=False)
        return bags

    def _bytes(self) -> int:
        return sum(t.numel() * t.element_size() for bags in self.kept.values() for t in bags)


_BAGS = _BagCache()
