"""The dashboard's one-off aggregation pass over a run: every stored chunk is decoded and summarised on worker
threads (analyses.stream.map_chunks: decoding into reused buffers, zstd and numpy overlapping across cores),
and the summaries are folded into the run's Aggregates in chunk order on the calling thread.

What is kept is described in data.py's module docstring; one chunk's share of the depth-attention part in
chunk_summary.py. Shapes: alpha blocks [tokens, slots, sources]; flattened cells [slots * sources]; compact
cells [V] (the valid ones, `plan.cols`). Nothing here writes into a run.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from depthscope.analyses.stream import MAX_WORKERS, map_chunks
from depthscope.probe import Run

from .cell_index import CellIndex, hist_range_of
from .chunk_summary import AlphaSummary, ChunkPlan, summarize_alpha

RMS_NAMES = ("input_rms", "output_rms", "residual_rms", "grad_rms")
RMS_LO, RMS_HI, RMS_BINS = -6.0, 6.0, 1200  # log10 bins of 0.01 dex (percentiles within ~2.3 %)
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
    rms_hist: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [slots, RMS_BINS]
    rms_sum: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [slots]
    rms_count: dict[str, np.ndarray] = field(default_factory=dict)
    loss_sum: float = 0.0
    loss_count: int = 0
    seconds: float = 0.0


@dataclass
class Kept:
    """Per-token ids the pass keeps in memory (None: the run is too long to keep them)."""

    token: np.ndarray | None = None  # [tokens] as stored (int32)
    document: np.ndarray | None = None  # [tokens] int64
    position: np.ndarray | None = None  # [tokens] int64


@dataclass
class ChunkPart:
    """One chunk's share of the pass, computed on a worker thread."""

    start: int
    stop: int
    token: np.ndarray  # [m] (-1 when the run has none)
    document: np.ndarray  # [m]
    position: np.ndarray  # [m]
    alpha: AlphaSummary | None
    rms: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> hist [slots, RMS_BINS], sum, count [slots]
    loss: tuple[float, int]


def pass_workers() -> int:
    """Worker threads of the pass: every core (up to analyses' MAX_WORKERS); the pass itself runs no torch."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cores))


def vocab_of(run: Run) -> int | None:
    """Vocabulary size for per-token-id sums (None: no token ids, or too large a vocabulary)."""
    if "token" not in run.arrays:
        return None
    vocab = run.vocab_size
    return vocab if vocab and vocab <= MAX_VOCAB_SUMS else None


class RowReader:
    """Thread-safe reads of the small per-token arrays over the span of one stored chunk of the driving array."""

    def __init__(self, run: Run, driver: str):
        self.run = run
        spans = run.arrays[driver].blocks()
        self.number = {a: i for i, (a, _) in enumerate(spans)}
        self.aligned = {name: array.blocks() == spans for name, array in run.arrays.items()}
        self._lock = threading.Lock()

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        number = self.number.get(start)
        if self.aligned.get(name) and number is not None:
            return self.run.arrays[name].read_block(number)  # its own buffer: safe on any thread
        with self._lock:  # LazyArray.read keeps a one-chunk cache
            return self.run.arrays[name].read(start, stop)


def rms_part(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hist [slots, RMS_BINS] of log10 x, sum [slots], count [slots]) of x [m, slots] over finite x > 0."""
    m, n = x.shape
    ok = np.isfinite(x) & (x > 0)
    every = bool(ok.all())  # the usual case: no masking copies
    lg = np.log10(x if every else np.where(ok, x, 1.0))
    lg -= RMS_LO  # in place, the same float operations as ((lg - LO) / (HI - LO) * BINS)
    lg /= RMS_HI - RMS_LO
    lg *= RMS_BINS
    b = lg.astype(np.int64)
    np.clip(b, 0, RMS_BINS - 1, out=b)
    b += (np.arange(n) * RMS_BINS)[None, :]  # [m, slots]: slot * RMS_BINS + bin
    hist = np.bincount(b.ravel() if every else b[ok], minlength=n * RMS_BINS).reshape(n, RMS_BINS)
    if every:
        return hist, x.sum(0, dtype=np.float64), np.full(n, m, dtype=np.int64)
    return hist, np.where(ok, x, 0).sum(0, dtype=np.float64), ok.sum(0)


def sum_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys, sums of values [keys, V] per key, each row's key number) of values [rows, V]."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(keys)), (inverse, np.arange(len(keys)))), shape=(len(uniq), len(keys)))
    return uniq, onehot @ values, inverse


class Pass:
    """One aggregation pass over `run` (call `run_pass()`); `progress(fraction)` after each chunk."""

    def __init__(self, run: Run, valid: np.ndarray, has_alpha: bool, progress: Callable[[float], None]):
        self.run = run
        self.valid = valid  # [slots, sources]
        self.has_alpha = has_alpha
        self.progress = progress
        n, s = valid.shape
        self.cols = np.flatnonzero(valid.reshape(-1))  # [V]
        self.names = [x for x in ("alpha", "token", "document", "position", "loss") + RMS_NAMES if x in run.arrays]
        self.agg = Aggregates(n_slots=n, max_sources=s, n_tokens=run.n_tokens)
        self.vocab = vocab_of(run)
        self.plan: ChunkPlan | None = None

    def run_pass(self, workers: int | None = None) -> tuple[Aggregates, Kept]:
        run, agg = self.run, self.agg
        if self.has_alpha:
            self._start_alpha()
        if not self.names or run.n_tokens == 0:
            return agg, Kept(*(np.zeros(0, t) for t in (np.int32, np.int64, np.int64)))
        small = [x for x in self.names if x != "alpha"]  # without weights to summarise, drive by a small array
        driver = "alpha" if self.has_alpha or not small else small[0]
        self.rows = RowReader(run, driver)
        keep = run.n_tokens <= MAX_MEMORY_TOKENS
        kept: dict[str, list[np.ndarray]] = {"token": [], "document": [], "position": []}
        total = max(run.n_tokens, 1)
        for part in map_chunks(run, driver, self._summarize, workers=workers or pass_workers()):
            if keep:
                for name in kept:
                    kept[name].append(getattr(part, name))
            self._fold(part)
            self.progress(min(part.stop / total, 0.999))
        if agg.cells is not None:
            agg.cells.finish()
        if not keep:
            return agg, Kept()
        return agg, Kept(*(np.concatenate(kept[x]) for x in ("token", "document", "position")))

    def _start_alpha(self) -> None:
        """Histogram range from the first chunk ([0, 1] widened for signed mixers), the per-chunk plan, totals."""
        run, agg = self.run, self.agg
        n, s = self.valid.shape
        hist_range = (0.0, 1.0)
        if run.n_tokens:
            first = run.alpha.read_block(0)  # the reader's own NaN check names the file on a fault
            compact = np.take(first.reshape(len(first), -1), self.cols, axis=1).astype(np.float32)  # [m, V]
            hist_range = hist_range_of(compact, np.ones(len(self.cols), dtype=bool))
        if self.vocab:
            agg.token_sum = np.zeros((self.vocab, n * s))
            agg.token_count = np.zeros(self.vocab, dtype=np.int64)
        agg.cells = CellIndex.plan(n * s, run.n_tokens, run.chunk_tokens, self.vocab)
        agg.cells.hist_range = hist_range
        agg.top_source = np.zeros((n, s), dtype=np.int64)
        self.plan = ChunkPlan.make(self.valid, run.alpha.dtype, hist_range, by_token=self.vocab is not None,
                                   id_hist=agg.cells.id_hist is not None)

    def _summarize(self, block: np.ndarray, start: int) -> ChunkPart:
        """Worker thread: one chunk (block: the driving array's rows, in a buffer reused after return)."""
        m = len(block)
        stop = start + m
        read = self.rows.read
        token = read("token", start, stop) if "token" in self.run.arrays else np.full(m, -1, np.int32)
        docs = read("document", start, stop) if "document" in self.run.arrays else np.full(m, -1)
        pos = read("position", start, stop) if "position" in self.run.arrays else np.arange(m)
        alpha = None
        if self.plan is not None:
            tok = np.clip(token.astype(np.int64), 0, self.vocab - 1) if self.vocab else None
            alpha = summarize_alpha(self.plan, block, tok, docs, where=f"{self.run.path} tokens {start}..{stop}")
        rms = {name: rms_part(read(name, start, stop)) for name in RMS_NAMES if name in self.run.arrays}
        loss = (0.0, 0)
        if "loss" in self.run.arrays:
            x = read("loss", start, stop)
            finite = np.isfinite(x)
            loss = (float(x[finite].sum(dtype=np.float64)), int(finite.sum()))
        return ChunkPart(start, stop, token, docs, pos, alpha, rms, loss)

    def _fold(self, part: ChunkPart) -> None:
        """Calling thread, chunk order: add one chunk's part to the aggregates."""
        agg = self.agg
        spans(agg, part.document, part.start)
        if part.alpha is not None:
            self._fold_alpha(part, part.alpha)
        for name, (hist, total, count) in part.rms.items():
            if name not in agg.rms_hist:
                agg.rms_hist[name] = np.zeros_like(hist, dtype=np.int64)
                agg.rms_sum[name] = np.zeros(len(total))
                agg.rms_count[name] = np.zeros(len(count), dtype=np.int64)
            agg.rms_hist[name] += hist
            agg.rms_sum[name] += total
            agg.rms_count[name] += count
        agg.loss_sum += part.loss[0]
        agg.loss_count += part.loss[1]

    def _full(self, compact: np.ndarray) -> np.ndarray:
        """[..., cells] float64 from [..., V] (zeros at invalid cells)."""
        out = np.zeros((*compact.shape[:-1], self.valid.size))
        out[..., self.cols] = compact
        return out

    def _fold_alpha(self, part: ChunkPart, a: AlphaSummary) -> None:
        agg = self.agg
        agg.chunk_starts.append(part.start)
        agg.chunk_stops.append(part.stop)
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
        agg.cells.fold(self.cols, a.id_counts, a.ids, a.id_tokens, a.top_value, a.top_offset, part.start, a.tokens)
        agg.top_source += a.top_source


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
