"""A clicked cell under a filter: its distribution over the selected tokens and the tokens with the largest
weight, from the per-chunk cell index where that is exact, and from bounded reads of the run otherwise.

- Distribution: a token range is exact (whole chunks from their histograms, the two edge chunks read);
  a token-text filter over the whole run is exact from the per-token-id histograms; anything else (a document,
  or a combination) comes from a bounded read of the selected span, flagged as sampled when it is cut short.
- Top tokens: candidates are the per-chunk top lists (filtered), plus every token read. A token missing from
  its chunk's list is no larger than that list's last value, so the answer is exact once the K-th best
  candidate reaches every unread chunk's bound; until then the chunk with the highest bound is read, within
  a budget, and what is left unproven is said in the note.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .cell_index import TOP_K, CellIndex, hist_of
from .chunk_cache import ChunkCache

Keep = Callable[[np.ndarray], np.ndarray]  # token indices -> bool mask of those a filter selects


@dataclass
class Seen:
    """Tokens of one cell already read (those the filter keeps) and the chunks whose selected part was read."""

    index: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    chunks: set[int] = field(default_factory=set)

    def add(self, chunk: int, index: np.ndarray, value: np.ndarray, keep: Keep | None) -> None:
        if keep is not None and len(index):
            mask = keep(index)
            index, value = index[mask], value[mask]
        self.index.append(index)
        self.value.append(value)
        self.chunks.add(chunk)


def overlapping(cache: ChunkCache, start: int, stop: int) -> range:
    """Chunks holding tokens of [start, stop)."""
    return range(cache.chunk_of(start), cache.chunk_of(stop - 1) + 1)


def read_span(cache: ChunkCache, c: int, chunk: int, start: int, stop: int, seen: Seen, keep: Keep | None) -> int:
    """Read chunk `chunk`'s part of [start, stop) at cell c into `seen`; the number of tokens read."""
    lo, hi = max(start, int(cache.starts[chunk])), min(stop, int(cache.stops[chunk]))
    seen.add(chunk, np.arange(lo, hi), cache.column(lo, hi, c), keep)
    return hi - lo


def range_counts(index: CellIndex, cache: ChunkCache, c: int, start: int, stop: int, seen: Seen) -> np.ndarray:
    """[bins] exact histogram of cell c over tokens [start, stop): whole chunks from the index, edges read."""
    lo, hi = index.hist_range
    counts = np.zeros(index.hist.shape[1], dtype=np.int64)
    for i in overlapping(cache, start, stop):
        a, b = int(cache.starts[i]), int(cache.stops[i])
        if start <= a and b <= stop:
            counts += index.chunk_hist[i][c]
        else:
            read_span(cache, c, i, start, stop, seen, None)
            counts += hist_of(seen.value[-1], lo, hi)
    return counts


def _best(index: np.ndarray, value: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (index, value) pairs, largest first, each token once."""
    index, first = np.unique(index, return_index=True)
    value = value[first]
    order = np.argsort(-value, kind="stable")[:k]
    return index[order], value[order]


def top_tokens(index: CellIndex, cache: ChunkCache, c: int, start: int, stop: int, keep: Keep | None,
               seen: Seen, budget: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(token index, weight, exact) of the TOP_K largest weights at cell c among the selected tokens."""
    chunks = overlapping(cache, start, stop)
    if index.keep_chunks:
        lists = [(index.chunk_top_index[i][:, c], index.chunk_top_value[i][:, c]) for i in chunks]
        bound = {i: float(index.chunk_top_value[i][-1, c]) for i in chunks if i not in seen.chunks}
    else:  # one whole-run list: every unread token is bounded by its last value
        lists = [(index.top_index[:, c], index.top_value[:, c])]
        unread = [i for i in chunks if i not in seen.chunks]
        bound = {unread[0]: float(index.top_value[-1, c])} if unread else {}
    cand_i = np.concatenate([x for x, _ in lists] + seen.index)
    cand_v = np.concatenate([v for _, v in lists] + seen.value).astype(np.float64)
    n_listed = sum(len(x) for x, _ in lists)
    listed = np.zeros(len(cand_i), dtype=bool)
    listed[:n_listed] = True
    ok = (cand_i >= start) & (cand_i < stop)
    if keep is not None and listed.any():
        sel = listed & ok
        ok[sel] = keep(cand_i[sel])  # read tokens were filtered when read
    best_i, best_v = _best(cand_i[ok], cand_v[ok], TOP_K)
    while True:
        kth = best_v[-1] if len(best_v) >= TOP_K else -np.inf
        open_ = {i: b for i, b in bound.items() if b > kth}
        if not open_:
            return best_i, best_v, True
        if budget <= 0 or not index.keep_chunks:
            return best_i, best_v, False
        i = max(open_, key=open_.get)  # the chunk that may hide the largest weight
        budget -= read_span(cache, c, i, start, stop, seen, keep)
        del bound[i]
        best_i, best_v = _best(np.concatenate([best_i, seen.index[-1]]),
                               np.concatenate([best_v, seen.value[-1].astype(np.float64)]), TOP_K)
