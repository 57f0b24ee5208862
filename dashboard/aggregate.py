"""The dashboard's one-off aggregation pass over a run: one scan of depthscope.analyses (every stored chunk
decoded once on worker threads, into reused buffers, zstd and numpy overlapping across cores) with the serving
reducers below, whose partials are folded into the run's Aggregates in chunk order on the calling thread:
ServingIndex (the depth-attention weights: partial sums, cell index, top sources), TokenIds (token / document
/ position ids and document spans), analyses' MomentsReducer per RMS quantity and LossSum.

What is kept is described in data.py's module docstring; one chunk's share of the depth-attention part in
chunk_summary.py. Shapes: alpha blocks [tokens, slots, sources]; flattened cells [slots * sources]; compact
cells [V] (the valid ones, `plan.cols`). Nothing here writes into a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from depthscope.analyses import DASHBOARD_BINS, MAX_WORKERS, Moments, MomentsReducer, Reducer, cores, scan
from depthscope.probe import Run

from .cell_index import CellIndex, hist_range_of
from .chunk_summary import AlphaSummary, ChunkPlan, summarize_alpha

RMS_NAMES = ("input_rms", "output_rms", "residual_rms", "grad_rms")
MAX_VOCAB_SUMS = 4096  # per-token-id partial sums only for vocabularies up to this size (byte level: 256)
MAX_MEMORY_TOKENS = 20_000_000  # token / document / position ids kept in memory up to this many tokens
MAX_DOC_SUMS = 4096  # per-document partial sums for up to this many documents (others: bounded reads)


@dataclass
class Aggregates:
    """Partial sums of one run (see data.py's module docstring). Arrays over flattened cells [slots * sources]."""

    n_slots: int
    max_sources: int
    n_tokens: int = 0
    chunk_starts: list[int] = field(default_factory=list)
    chunk_stops: list[int] = field(default_factory=list)
    chunk_sum: list[np.ndarray] = field(default_factory=list)  # per chunk [cells] float64
    chunk_sumsq: list[np.ndarray] = field(default_factory=list)
    token_sum: np.ndarray | None = None  # [vocab, cells]
    token_count: np.ndarray | None = None  # [vocab]
    doc_index: dict[int, int] = field(default_factory=dict)
    doc_sum: list[np.ndarray] = field(default_factory=list)  # per document [cells]
    doc_count: list[int] = field(default_factory=list)
    doc_span: dict[int, list[int]] = field(default_factory=dict)  # document -> [first token, last token + 1, count]
    cells: CellIndex | None = None  # per-chunk histograms and top tokens of every cell
    top_source: np.ndarray | None = None  # [slots, sources] tokens whose largest weight is that source
    rms: dict[str, Moments] = field(default_factory=dict)  # name -> moments and log histogram per slot
    loss_sum: float = 0.0
    loss_count: int = 0
    seconds: float = 0.0


@dataclass
class Kept:
    """Per-token ids the pass keeps in memory (None: the run is too long to keep them)."""

    token: np.ndarray | None = None  # [tokens] as stored (int32)
    document: np.ndarray | None = None  # [tokens] int64
    position: np.ndarray | None = None  # [tokens] int64


def pass_workers() -> int:
    """Worker threads of the pass: every core (up to analyses' MAX_WORKERS); the pass itself runs no torch."""
    return max(1, min(MAX_WORKERS, cores()))


def vocab_of(run: Run) -> int | None:
    """Vocabulary size for per-token-id sums (None: no token ids, or too large a vocabulary)."""
    if "token" not in run.arrays:
        return None
    vocab = run.vocab_size
    return vocab if vocab and vocab <= MAX_VOCAB_SUMS else None


def sum_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys, sums of values [keys, V] per key, each row's key number) of values [rows, V]."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(keys)), (inverse, np.arange(len(keys)))), shape=(len(uniq), len(keys)))
    return uniq, onehot @ values, inverse


class ServingIndex(Reducer):
    """Scan reducer: each chunk's AlphaSummary (chunk_summary.py, on a worker thread) folded into the
    Aggregates' partial sums, per-token-id and per-document sums, cell index and top-source counts."""

    def __init__(self, run: Run, agg: Aggregates, plan: ChunkPlan, vocab: int | None, valid: np.ndarray):
        self.run, self.agg, self.plan, self.vocab, self.valid = run, agg, plan, vocab, valid
        self.cols = np.flatnonzero(valid.reshape(-1))  # [V]
        self.arrays = tuple(x for x in ("alpha", "token", "document") if x in run.arrays)

    def partial(self, chunk) -> tuple[int, int, AlphaSummary]:
        m = len(chunk)
        tok = None
        if self.vocab and "token" in chunk:
            tok = np.clip(chunk["token"].astype(np.int64), 0, self.vocab - 1)
        docs = chunk["document"] if "document" in chunk else np.full(m, -1)
        where = f"{self.run.path} tokens {chunk.start}..{chunk.stop}"
        return chunk.start, chunk.stop, summarize_alpha(self.plan, chunk["alpha"], tok, docs, where=where)

    def merge(self, part: tuple[int, int, AlphaSummary]) -> None:
        start, stop, a = part
        agg = self.agg
        agg.chunk_starts.append(start)
        agg.chunk_stops.append(stop)
        agg.chunk_sum.append(self._full(a.total))
        agg.chunk_sumsq.append(self._full(a.sumsq))
        if agg.token_sum is not None:
            ids, sums, inverse = sum_by(a.group_tok, a.group_sum)  # [ids, V]
            agg.token_sum[np.ix_(ids, self.cols)] += sums
            agg.token_count[ids] += np.bincount(inverse, weights=a.group_count, minlength=len(ids)).astype(np.int64)
        docs, sums, inverse = sum_by(a.group_doc, a.group_sum)  # [docs in chunk, V]
        counts = np.bincount(inverse, weights=a.group_count, minlength=len(docs)).astype(np.int64)
        for d, row_sum, count in zip(docs.tolist(), sums, counts.tolist()):
            row = agg.doc_index.get(d)
            if row is None:
                if len(agg.doc_index) >= MAX_DOC_SUMS:
                    continue
                row = agg.doc_index[d] = len(agg.doc_sum)
                agg.doc_sum.append(np.zeros(self.valid.size))
                agg.doc_count.append(0)
            agg.doc_sum[row][self.cols] += row_sum
            agg.doc_count[row] += count
        agg.cells.fold(self.cols, a.id_counts, a.ids, a.id_tokens, a.top_value, a.top_offset, start, a.tokens)
        agg.top_source += a.top_source

    def result(self) -> Aggregates:
        self.agg.cells.finish()
        return self.agg

    def _full(self, compact: np.ndarray) -> np.ndarray:
        """[..., cells] float64 from [..., V] (zeros at invalid cells)."""
        out = np.zeros((*compact.shape[:-1], self.valid.size))
        out[..., self.cols] = compact
        return out


class TokenIds(Reducer):
    """Scan reducer: token / document / position ids (kept in memory up to MAX_MEMORY_TOKENS; a missing
    array reads as -1, positions as the index within the chunk) and each document's span."""

    def __init__(self, run: Run, agg: Aggregates):
        self.agg = agg
        self.arrays = tuple(x for x in ("token", "document", "position") if x in run.arrays)
        self.keep = run.n_tokens <= MAX_MEMORY_TOKENS
        self.kept: dict[str, list[np.ndarray]] = {"token": [], "document": [], "position": []}

    def partial(self, chunk) -> tuple[int, dict[str, np.ndarray]]:
        m = len(chunk)
        ids = {"token": chunk["token"] if "token" in chunk else np.full(m, -1, np.int32),
               "document": chunk["document"] if "document" in chunk else np.full(m, -1),
               "position": chunk["position"] if "position" in chunk else np.arange(m)}
        return chunk.start, ids

    def merge(self, part: tuple[int, dict[str, np.ndarray]]) -> None:
        start, ids = part
        spans(self.agg, ids["document"], start)
        if self.keep:
            for name, values in ids.items():
                self.kept[name].append(values)

    def result(self) -> Kept:
        if not self.keep:
            return Kept()
        kept = Kept(*(np.concatenate(self.kept[x]) for x in ("token", "document", "position")))
        self.kept = {}  # the chunks' pieces are not held twice
        return kept


class LossSum(Reducer):
    """Scan reducer: sum and count of the finite per-token losses."""

    arrays = ("loss",)

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def partial(self, chunk) -> tuple[float, int]:
        x = chunk["loss"]
        finite = np.isfinite(x)
        return float(x[finite].sum(dtype=np.float64)), int(finite.sum())

    def merge(self, part: tuple[float, int]) -> None:
        self.total += part[0]
        self.count += part[1]

    def result(self) -> tuple[float, int]:
        return self.total, self.count


class Pass:
    """One aggregation pass over `run` (call `run_pass()`); `progress(fraction)` after each chunk."""

    def __init__(self, run: Run, valid: np.ndarray, has_alpha: bool, progress: Callable[[float], None]):
        self.run = run
        self.valid = valid  # [slots, sources]
        self.has_alpha = has_alpha
        self.progress = progress
        n, s = valid.shape
        self.names = [x for x in ("alpha", "token", "document", "position", "loss") + RMS_NAMES if x in run.arrays]
        self.agg = Aggregates(n_slots=n, max_sources=s, n_tokens=run.n_tokens)
        self.vocab = vocab_of(run)
        self.results = None

    def reducers(self) -> dict[str, Reducer]:
        """The serving reducers of this run (a scan may hold others besides)."""
        run = self.run
        out: dict[str, Reducer] = {"ids": TokenIds(run, self.agg)}
        if self.has_alpha:
            out["alpha"] = ServingIndex(run, self.agg, self._start_alpha(), self.vocab, self.valid)
        for name in RMS_NAMES:
            if name in run.arrays:
                out[name] = MomentsReducer(name, self.agg.n_slots, DASHBOARD_BINS)
        if "loss" in run.arrays:
            out["loss"] = LossSum()
        return out

    def run_pass(self, workers: int | None = None, extra: dict[str, Reducer] | None = None
                 ) -> tuple[Aggregates, Kept]:
        """The one scan: the serving reducers and `extra` ones (e.g. analyses' routing statistics, whose
        results, or errors, are left in self.results)."""
        run, agg = self.run, self.agg
        reducers = {**self.reducers(), **(extra or {})}
        if not self.names or run.n_tokens == 0:
            return agg, Kept(*(np.zeros(0, t) for t in (np.int32, np.int64, np.int64)))
        self.results = scan(run, reducers, workers=workers or pass_workers(), progress=self.fold_progress)
        self.collect(self.results, exclude=set(extra or ()))
        return agg, self.results["ids"]  # (ScanResults keeps each result once asked: `ids` is not rebuilt)

    def fold_progress(self, fraction: float) -> None:
        self.progress(min(fraction, 0.999))

    def collect(self, results, exclude: set[str] = frozenset()) -> None:
        """Take the serving reducers' results into the Aggregates (each raises its error if it failed)."""
        agg = self.agg
        for name in results:
            if name in exclude:
                continue
            value = results[name]
            if name in RMS_NAMES:
                agg.rms[name] = value
            elif name == "loss":
                agg.loss_sum, agg.loss_count = value

    def _start_alpha(self) -> ChunkPlan:
        """Histogram range from the first chunk ([0, 1] widened for signed mixers), the per-chunk plan, totals."""
        run, agg = self.run, self.agg
        n, s = self.valid.shape
        cols = np.flatnonzero(self.valid.reshape(-1))
        hist_range = (0.0, 1.0)
        if run.n_tokens:
            first = run.alpha.read_block(0)  # the reader's own NaN check names the file on a fault
            compact = np.take(first.reshape(len(first), -1), cols, axis=1).astype(np.float32)  # [m, V]
            hist_range = hist_range_of(compact, np.ones(len(cols), dtype=bool))
        if self.vocab:
            agg.token_sum = np.zeros((self.vocab, n * s))
            agg.token_count = np.zeros(self.vocab, dtype=np.int64)
        agg.cells = CellIndex.plan(n * s, run.n_tokens, run.chunk_tokens, self.vocab)
        agg.cells.hist_range = hist_range
        agg.top_source = np.zeros((n, s), dtype=np.int64)
        return ChunkPlan.make(self.valid, run.alpha.dtype, hist_range, by_token=self.vocab is not None,
                              id_hist=agg.cells.id_hist is not None)


def spans(agg: Aggregates, docs: np.ndarray, start: int) -> None:
    """Extend each document's [first token, last token + 1, count] by its runs in one chunk."""
    if not len(docs):
        return
    change = np.nonzero(np.diff(docs))[0] + 1
    bounds = np.concatenate([[0], change, [len(docs)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        d = int(docs[a])
        span = agg.doc_span.get(d)
        if span is None:
            agg.doc_span[d] = [start + int(a), start + int(b), int(b - a)]
        else:
            span[0] = min(span[0], start + int(a))
            span[1] = max(span[1], start + int(b))
            span[2] += int(b - a)
