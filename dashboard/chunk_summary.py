"""Everything the aggregation pass keeps of one stored chunk of depth-attention weights, computed on the valid
cells only (in a Full AttnRes layout about half of [slots, sources] is padding) so that it can run on a worker
thread straight from the decoded block.

A chunk's summary: sums and sums of squares per cell; sums per (document, token id) group of tokens; the
per-cell histogram, split by token id where the run keeps per-id histograms; the TOP_K largest weights per
cell; and how often each source is a token's largest weight. Shapes: block [tokens, slots, sources];
compact cells [tokens, V] with V = number of valid (slot, source) cells, in flattened order `plan.cols`.
Float16 weights (the probe's default) are binned and ranked through tables over their bit patterns
(half_table.py); any other float dtype through the same arithmetic as the queries.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from depthscope.analyses import NaNWeightError

from .cell_index import _SAMPLE_ROWS as SAMPLE_ROWS
from .cell_index import CELL_BINS, TOP_K, bin_of, chunk_top
from .half_table import NAN_BIN, bin_floors, bin_table, half_to_float32, order_key

WIDTH = CELL_BINS + 1  # histogram bins per cell in a chunk's counts: CELL_BINS, then NAN_BIN


@dataclass
class ChunkPlan:
    """What every chunk's summary needs, worked out once per run."""

    valid: np.ndarray  # [slots, sources] bool
    cols: np.ndarray  # [V] flattened index (slot * sources + source) of each valid cell
    seg_start: np.ndarray  # [slots with a source] first compact column of each such slot
    seg_slot: np.ndarray  # [slots with a source] its slot
    hist_range: tuple[float, float]
    table: np.ndarray | None  # [65536] uint16 bin of each float16 pattern; None: another dtype
    floors: np.ndarray | None  # [CELL_BINS] smallest float16 value of each bin and above (with table)
    by_token: bool  # group tokens by id (per-id sums)
    id_hist: bool  # histograms per token id

    @classmethod
    def make(cls, valid: np.ndarray, dtype: np.dtype, hist_range: tuple[float, float], by_token: bool,
             id_hist: bool) -> "ChunkPlan":
        cols = np.flatnonzero(valid.reshape(-1))
        per_slot = valid.sum(1)  # [slots]
        starts = np.concatenate([[0], np.cumsum(per_slot)[:-1]])
        has = per_slot > 0
        table = bin_table(*hist_range) if np.dtype(dtype) == np.float16 else None
        floors = None if table is None else bin_floors(table)
        return cls(valid, cols, starts[has], np.flatnonzero(has), hist_range, table, floors, by_token,
                   by_token and id_hist)

    @property
    def sources(self) -> int:
        return self.valid.shape[1]


@dataclass
class AlphaSummary:
    """One chunk's summary (see the module docstring); per-cell arrays over the V valid cells."""

    tokens: int
    total: np.ndarray  # [V] float64 sum over tokens
    sumsq: np.ndarray  # [V] float64
    group_doc: np.ndarray  # [groups] document of each (document, token id) group
    group_tok: np.ndarray  # [groups] token id of each group (-1 when not grouped by token)
    group_count: np.ndarray  # [groups] tokens
    group_sum: np.ndarray  # [groups, V] float64
    ids: np.ndarray  # [ids] token ids of the chunk (sorted) that id_counts splits by; [1] of -1 when not split
    id_counts: np.ndarray  # [ids, V, CELL_BINS] int64 histogram counts per token id
    id_tokens: np.ndarray  # [ids] tokens of each id
    top_value: np.ndarray  # [TOP_K, V] float32, largest first (-inf where fewer tokens)
    top_offset: np.ndarray  # [TOP_K, V] int32 row in the chunk (-1 where fewer tokens)
    top_source: np.ndarray  # [slots, sources] int64 tokens whose largest weight is that source


def summarize_alpha(plan: ChunkPlan, block: np.ndarray, tokens: np.ndarray | None, docs: np.ndarray,
                    where: str = "chunk") -> AlphaSummary:
    """Summary of block [m, slots, sources] (not kept: it may be a reused buffer); tokens [m] ids already
    clipped to the vocabulary (None: not grouped by token), docs [m]. Raises NaNWeightError on a NaN weight
    of a valid source."""
    m = len(block)
    compact = np.take(block.reshape(m, -1), plan.cols, axis=1)  # [m, V], a copy in token order
    f32 = half_to_float32(compact) if plan.table is not None else compact.astype(np.float32)
    if plan.table is None and np.isnan(f32).any():
        raise NaNWeightError(where, "NaN depth-attention weight for a valid source")
    doc_ids, doc_inv = np.unique(docs, return_inverse=True)
    grouped = plan.by_token and tokens is not None
    ids, tok_inv = np.unique(tokens, return_inverse=True) if grouped else (np.array([-1]), np.zeros(m, np.intp))
    counts = _counts(plan, compact, tok_inv if plan.id_hist else None, len(ids))
    if counts[..., NAN_BIN].any():
        raise NaNWeightError(where, "NaN depth-attention weight for a valid source")
    # (document, token id) groups: sums through a sparse one-hot [groups, m] (float32, as a plain matmul would)
    keys, group = np.unique(doc_inv.astype(np.int64) * len(ids) + tok_inv, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(m, np.float32), (group, np.arange(m))), shape=(len(keys), m))
    value, offset = chunk_top(f32, TOP_K, np.ones(len(plan.cols), dtype=bool), _floor(plan, counts.sum(0), m))
    return AlphaSummary(
        tokens=m, total=f32.sum(0, dtype=np.float64), sumsq=np.einsum("ij,ij->j", f32, f32, dtype=np.float64),
        group_doc=doc_ids[keys // len(ids)], group_tok=ids[keys % len(ids)] if grouped else np.full(len(keys), -1),
        group_count=np.bincount(group, minlength=len(keys)), group_sum=(onehot @ f32).astype(np.float64),
        ids=ids if plan.id_hist else np.array([-1]), id_counts=counts[..., :CELL_BINS],
        id_tokens=np.bincount(tok_inv, minlength=len(ids)) if plan.id_hist else np.array([m]),
        top_value=value, top_offset=offset, top_source=_top_source(plan, compact, f32))


def _counts(plan: ChunkPlan, compact: np.ndarray, tok_inv: np.ndarray | None, n_ids: int) -> np.ndarray:
    """[ids or 1, V, WIDTH] histogram counts of compact [m, V], split by token id (tok_inv [m]) when given.

    Per id, one bincount over that id's rows (gathered together first): its counts stay in cache."""
    m, v = compact.shape
    bounds = np.array([0, m])
    if tok_inv is not None:
        order = np.argsort(tok_inv, kind="stable")
        compact = np.take(compact, order, axis=0)  # [m, V] rows grouped by token id
        bounds = np.searchsorted(tok_inv[order], np.arange(n_ids + 1))
    # uint16 indices where they fit (a quarter of the memory traffic of intp; bincount widens per group)
    dtype = np.uint16 if v * WIDTH <= 2**16 else np.intp
    if plan.table is not None:
        index = plan.table[compact.view(np.uint16)].astype(dtype, copy=False)  # [m, V] bin
    else:
        index = bin_of(compact.astype(np.float32), *plan.hist_range).astype(dtype)
    index += np.arange(v, dtype=dtype) * dtype(WIDTH)  # [m, V]: cell * WIDTH + bin
    out = np.empty((len(bounds) - 1, v * WIDTH), dtype=np.int64)
    for j in range(len(bounds) - 1):
        out[j] = np.bincount(index[bounds[j]: bounds[j + 1]].ravel(), minlength=v * WIDTH)
    return out.reshape(-1, v, WIDTH)


def _floor(plan: ChunkPlan, hist: np.ndarray, m: int) -> np.ndarray | None:
    """[V] a value at or below each cell's TOP_K-th largest weight, from the chunk's histogram hist [V, WIDTH]:
    the floor of the highest bin t holding, with the bins above, at least TOP_K tokens; NaN (let chunk_top
    sample) where that leaves more candidates than its sample would (or t is the lowest bin)."""
    if plan.floors is None:
        return None
    above = np.cumsum(hist[:, CELL_BINS - 1:: -1], axis=1)[:, ::-1]  # [V, CELL_BINS]: tokens in bin t or higher
    t = (above >= min(TOP_K, m)).sum(1) - 1  # [V]
    count = above[np.arange(len(t)), np.maximum(t, 0)]
    return np.where((t > 0) & (count <= 2 * TOP_K * max(1, m // SAMPLE_ROWS)), plan.floors[np.maximum(t, 0)], np.nan)


def _top_source(plan: ChunkPlan, compact: np.ndarray, f32: np.ndarray) -> np.ndarray:
    """[slots, sources] counts of each valid source being a token's largest weight (first one on ties)."""
    n, s = plan.valid.shape
    m = len(compact)
    if not len(plan.seg_start) or not m:
        return np.zeros((n, s), dtype=np.int64)
    bounds = np.append(plan.seg_start, len(plan.cols))
    if plan.table is not None:
        # one max per slot of (order key << 16 | 65535 - column within the slot): the first largest weight
        within = np.arange(len(plan.cols)) - np.repeat(plan.seg_start, np.diff(bounds))  # [V]
        packed = np.empty(compact.shape, dtype=np.uint32)  # [m, V]
        halves = packed.view(np.uint16).reshape(m, -1, 2)  # [m, V, 2]: (low, high) half of each uint32
        low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
        halves[..., high] = order_key(compact.view(np.uint16))  # two strided stores, no shifts or casts
        halves[..., low] = (0xFFFF - within).astype(np.uint16)[None, :]
        best = np.maximum.reduceat(packed, plan.seg_start, axis=1)  # [m, slots with a source]
        column = plan.seg_start[None, :] + (0xFFFF - (best & 0xFFFF)).astype(np.intp)
    else:
        column = np.stack([plan.seg_start[j] + f32[:, a:b].argmax(1)
                           for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))], axis=1)
    return np.bincount(plan.cols[column].ravel(), minlength=n * s).reshape(n, s)  # flattened cell = slot*s+source
