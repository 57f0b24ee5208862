"""Per-chunk index of every depth-attention weight (cell), built in the aggregation pass, so that a clicked
cell's distribution over tokens and its top tokens are answered from memory, not from a read of the run.

For each stored chunk of tokens and each flattened cell (slot * max_sources + source) it keeps:
- a histogram over CELL_BINS equal bins of the weight (exact distribution for any range of whole chunks);
- the TOP_K largest weights and their token indices (exact top tokens for any range of whole chunks, and a
  bound for every other filter: a token that is not listed is no larger than its chunk's K-th value);
and, for small vocabularies, one histogram per token id over the whole run (exact distribution for a
token-text filter). A chunk is folded in from its summary over the valid cells (chunk_summary.py, on a worker
thread of the aggregation pass); invalid cells count as zero weights. Shapes: af (a chunk's weights, chunk_top)
is [tokens, cells]; hist [cells, CELL_BINS]; top [TOP_K, cells]; id_hist [vocab, cells, CELL_BINS].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CELL_BINS = 40
TOP_K = 12
INDEX_BYTES = 192 * 2**20  # per-chunk histograms and top lists kept only up to this size (else: bounded reads)
ID_HIST_BYTES = 64 * 2**20  # per-token-id histograms kept only up to this size
_SAMPLE_ROWS = 1024  # rows of a chunk whose k-th largest weight gives each cell's candidate threshold
_HEAVY = 1024  # candidates of one cell above which it is partitioned instead (ties)


def hist_range_of(af: np.ndarray, valid_flat: np.ndarray) -> tuple[float, float]:
    """Histogram range fixed from the first chunk: [0, 1] widened to whole numbers (signed mixers)."""
    vals = af[:, valid_flat]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    return min(0.0, np.floor(lo)), max(1.0, np.ceil(hi))


def bin_of(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bin (0..CELL_BINS-1, intp) of each weight; the build and every query use this same rounding."""
    scale = np.float32(CELL_BINS / (hi - lo))
    t = np.asarray(values, dtype=np.float32) * scale
    if lo:
        t -= np.float32(lo * scale)
    b = t.astype(np.intp)
    np.clip(b, 0, CELL_BINS - 1, out=b)
    return b


def hist_of(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """[CELL_BINS] counts of a 1-d array of weights."""
    return np.bincount(bin_of(values, lo, hi).ravel(), minlength=CELL_BINS).astype(np.int64)


def float_key(vals: np.ndarray) -> np.ndarray:
    """uint32 keys of float32 values (not NaN) whose integer order is the float order; -0 and +0 equal."""
    bits = (np.asarray(vals, dtype=np.float32) + np.float32(0)).view(np.uint32)  # -0 + 0 = +0
    return np.where(bits >= 0x80000000, ~bits, bits | np.uint32(0x80000000))


def _rank_within(cols: np.ndarray, vals: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): entries sorted by column then value descending (ties in their given order), and each
    one's rank in its column. One stable sort of (column, descending value) packed in a uint64: a fraction of
    the cost of lexsort on two keys."""
    descending = np.uint32(0xFFFFFFFF) - float_key(vals)
    order = np.argsort((cols.astype(np.uint64) << np.uint64(32)) | descending.astype(np.uint64), kind="stable")
    sorted_cols = cols[order]
    first = np.searchsorted(sorted_cols, sorted_cols, side="left")
    return order, np.arange(len(order)) - first


def chunk_top(af: np.ndarray, k: int, valid_flat: np.ndarray, floor: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(value [k, cells] float32, offset [k, cells] int32) of the k largest weights of each valid cell in a
    chunk, largest first (-inf / -1 where there are fewer tokens, and at invalid cells).

    Instead of partitioning every column of [tokens, cells] (slow along axis 0), the k-th largest weight of
    an even sample of rows gives each cell a threshold at or below its true k-th largest; only the entries at
    or above it (about k * tokens / sample per cell) are sorted. Columns where ties pile up are partitioned.
    floor [cells]: where not NaN, a value known to be at or below the cell's k-th largest (from the chunk's
    histogram); those cells skip the sample."""
    m, cells = af.shape
    value = np.full((k, cells), -np.inf, dtype=np.float32)
    offset = np.full((k, cells), -1, dtype=np.int32)
    cols = np.nonzero(valid_flat)[0]
    if m == 0 or not len(cols):
        return value, offset
    kk = min(k, m)
    threshold = np.full(cells, np.inf, dtype=np.float32)
    if floor is not None:
        known = ~np.isnan(floor[cols])
        threshold[cols[known]] = floor[cols[known]]
        cols = cols[~known]
    sample = np.ascontiguousarray(af[:: max(1, m // _SAMPLE_ROWS)][:, cols].T)  # [sampled cells, sampled tokens]
    if sample.shape[1] > kk:
        threshold[cols] = np.partition(sample, sample.shape[1] - kk, axis=1)[:, sample.shape[1] - kk]
    else:
        threshold[cols] = -np.inf
    rows, cand = np.divmod(np.flatnonzero(af >= threshold[None, :]), cells)  # 1-d nonzero: quicker than 2-d
    per_col = np.bincount(cand, minlength=cells)
    heavy = np.nonzero(per_col > _HEAVY)[0]  # ties (e.g. a row with one source): partition those columns
    if len(heavy):
        light = per_col[cand] <= _HEAVY
        rows, cand = rows[light], cand[light]
        part = np.argpartition(np.ascontiguousarray(af[:, heavy].T), m - kk, axis=1)[:, m - kk:]  # [heavy, kk]
        rows = np.concatenate([rows, part.T.ravel()])
        cand = np.concatenate([cand, np.tile(heavy, kk)])
    vals = af[rows, cand]
    order, rank = _rank_within(cand, vals, k)
    keep = rank < k
    pick = order[keep]
    value[rank[keep], cand[pick]] = vals[pick]
    offset[rank[keep], cand[pick]] = rows[pick]
    return value, offset


@dataclass
class CellIndex:
    """The per-chunk histograms and top lists of one run, plus whole-run totals (see the module docstring)."""

    cells: int
    keep_chunks: bool  # per-chunk arrays kept (within INDEX_BYTES)
    vocab: int | None  # per-token-id histograms kept for ids < vocab
    hist_range: tuple[float, float] = (0.0, 1.0)
    hist: np.ndarray | None = None  # [cells, bins] whole run
    id_hist: np.ndarray | None = None  # [vocab, cells, bins]
    chunk_hist: list[np.ndarray] = field(default_factory=list)  # per chunk [cells, bins] uint16 / int32
    chunk_top_value: list[np.ndarray] = field(default_factory=list)  # per chunk [TOP_K, cells] float32
    chunk_top_index: list[np.ndarray] = field(default_factory=list)  # per chunk [TOP_K, cells] int64 (token)
    top_value: np.ndarray | None = None  # [TOP_K, cells] whole run, largest first
    top_index: np.ndarray | None = None
    _id_counts: np.ndarray | None = field(default=None, repr=False)  # [vocab, V, bins] while folding
    _id_tokens: np.ndarray | None = field(default=None, repr=False)  # [vocab]
    _id_cols: np.ndarray | None = field(default=None, repr=False)  # [V]

    @classmethod
    def plan(cls, cells: int, n_tokens: int, chunk_tokens: int, vocab: int | None) -> "CellIndex":
        chunks = -(-max(n_tokens, 1) // max(chunk_tokens, 1))
        per_chunk = cells * (CELL_BINS * (2 if chunk_tokens < 2**16 else 4) + TOP_K * 12)
        keep = chunks * per_chunk <= INDEX_BYTES
        if vocab and vocab * cells * CELL_BINS * 4 > ID_HIST_BYTES:
            vocab = None
        index = cls(cells=cells, keep_chunks=keep, vocab=vocab)
        index.hist = np.zeros((cells, CELL_BINS), dtype=np.int64)
        if vocab:
            index.id_hist = np.zeros((vocab, cells, CELL_BINS), dtype=np.int32)
        return index

    @property
    def zero_bin(self) -> int:
        """The bin of a zero weight (where every invalid cell's tokens are counted)."""
        return int(bin_of(np.zeros(1, np.float32), *self.hist_range)[0])

    def fold(self, cols: np.ndarray, counts: np.ndarray, ids: np.ndarray, id_tokens: np.ndarray,
             value: np.ndarray, offset: np.ndarray, start: int, m: int) -> None:
        """Fold in one chunk of m tokens from `start`, summarised over its valid cells `cols` [V]:
        counts [ids, V, CELL_BINS] split by token id `ids` (of id_tokens [ids] tokens each; ids [-1] when not
        split), value / offset [TOP_K, V] its top lists (offset: row in the chunk). Every other cell holds m
        zero weights, as the reference computation over all cells has it. Call `finish()` after the last."""
        zb = self.zero_bin
        invalid = np.setdiff1d(np.arange(self.cells), cols)
        hist = np.zeros((self.cells, CELL_BINS), dtype=np.int64)  # [cells, bins]
        hist[invalid, zb] = m
        hist[cols] = counts.sum(0)
        if self.id_hist is not None and ids[0] >= 0:
            if self._id_counts is None:  # per-id counts of the valid cells only, spread out by finish()
                self._id_counts = np.zeros((self.vocab, len(cols), CELL_BINS), dtype=np.int32)
                self._id_tokens = np.zeros(self.vocab, dtype=np.int64)
                self._id_cols = cols
            self._id_counts[ids] += counts.astype(np.int32)  # whole rows; ids are distinct: no lost update
            self._id_tokens[ids] += id_tokens
        self.hist += hist
        full_value = np.full((TOP_K, self.cells), -np.inf, dtype=np.float32)  # [TOP_K, cells]
        index = np.full((TOP_K, self.cells), -1, dtype=np.int64)
        full_value[:, cols] = value
        index[:, cols] = np.where(offset >= 0, offset.astype(np.int64) + start, -1)
        if self.keep_chunks:
            self.chunk_hist.append(hist.astype(np.uint16 if m < 2**16 else np.int32))
            self.chunk_top_value.append(full_value)
            self.chunk_top_index.append(index)
        self._merge_top(full_value, index)

    def finish(self) -> None:
        """Spread the per-id counts over every cell (an invalid cell: each token once, at the zero bin)."""
        if self.id_hist is None or self._id_counts is None:
            return
        cols = self._id_cols
        self.id_hist[:, cols] = self._id_counts
        invalid = np.setdiff1d(np.arange(self.cells), cols)
        self.id_hist[:, invalid, self.zero_bin] = self._id_tokens.astype(np.int32)[:, None]
        self._id_counts = self._id_tokens = None

    def _merge_top(self, value: np.ndarray, index: np.ndarray) -> None:
        if self.top_value is None:
            self.top_value, self.top_index = value, index
            return
        vals = np.concatenate([self.top_value, value])  # [2K, cells]
        idx = np.concatenate([self.top_index, index])
        order = np.argsort(-vals, axis=0, kind="stable")[:TOP_K]  # [K, cells]
        self.top_value = np.take_along_axis(vals, order, 0)
        self.top_index = np.take_along_axis(idx, order, 0)
