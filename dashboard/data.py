"""Dashboard-side data: what the app keeps of a run so that every callback answers quickly: queries and views
over serving aggregates, no statistic of its own (the statistics are depthscope.analyses' public names).

- one scan of the run (depthscope.analyses.scan; aggregate.py's reducers, in a background thread for large
  runs, its chunks decoded once on worker threads) keeps per-chunk, per-document and per-token-id partial
  sums of the depth-attention weights alpha [tokens, slots, sources], per-chunk per-cell histograms and top
  tokens (cell_index.py; answered by cell_query.py), the RMS moments and log histograms of analyses
  (percentile bands), top-source counts, and analyses' routing statistics at the default window;
- filtered token-averaged weight matrices (token range / document / token-text regular expression) are
  answered from those partial sums exactly where they can be, and otherwise from a bounded read of the run
  (exact when the selected span is small, else an even sample of chunks, flagged `sampled` and said in the UI);
  the chunks such a read decodes are kept in a small LRU (chunk_cache.py) shared by the view's callbacks;
- windows of per-token statistics for the Tokens page come from analyses' routing kernel (token_stats), on
  the window only; token labels from the run's own vocabulary (Run.token_labels).

Shapes: alpha chunks are [tokens, slots, sources]; flattened cells are [tokens, slots * sources].
Nothing here writes into a run.
"""
from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from depthscope.analyses import AnalysisError, RoutingAccumulator, routing_kernel, token_stats
from depthscope.models import SHOWN_TOKEN_STATISTICS
from depthscope.probe import Run, RunError

from .aggregate import RMS_NAMES, Aggregates, Pass
from .cell_index import CELL_BINS, hist_of
from .cell_query import Seen, overlapping, range_counts, read_span, top_tokens
from .chunk_cache import ChunkCache
from .token_match import PatternError, compile_pattern, match_table, matches

READ_BUDGET = 8_192  # most tokens a filtered query reads from disk per callback (else: sampled)
WINDOW_MAX = 4096  # longest token window of the Tokens page
TOKEN_STATS = SHOWN_TOKEN_STATISTICS  # the per-token statistics the token views offer, in order


def column_labels(source_labels: list[list[str]]) -> list[str]:
    """Columns of a sublayer x source matrix: the longest row's labels, then any others in order of appearance.

    Full AttnRes: emb, attn1, mlp1, ...; Block AttnRes: emb, block1, ..., partial; Hyper: stream1..n.
    """
    rows = [r for r in source_labels if r]
    if not rows:
        return []
    columns = list(max(rows, key=len))
    for row in rows:
        for label in row:
            if label not in columns:
                columns.append(label)
    return columns


@dataclass
class Filter:
    """Tokens a routing view averages over: [start, stop) and/or one document and/or a token-text regex."""

    start: int | None = None
    stop: int | None = None
    document: int | None = None
    regex: str | None = None

    @property
    def empty(self) -> bool:
        return self.start is None and self.stop is None and self.document is None and not self.regex

    def describe(self) -> str:
        parts = []
        if self.start is not None or self.stop is not None:
            parts.append(f"tokens {self.start or 0}..{'' if self.stop is None else self.stop}")
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.regex:
            parts.append(f"text ~ /{self.regex}/")
        return ", ".join(parts) or "all tokens"


class FilterError(ValueError):
    """A filter the user typed cannot be applied (bad regex, empty range)."""


@dataclass
class RoutingResult:
    """A token-averaged weight matrix as a tidy frame, and how it was obtained."""

    frame: pd.DataFrame  # slot, sublayer, label, source_index, source, mean, std, count
    tokens: int  # tokens averaged over
    sampled: bool = False
    note: str = ""


@dataclass
class CellResult:
    """One weight (slot, source) over tokens: histogram and the tokens with the largest weight."""

    edges: np.ndarray  # [bins + 1]
    counts: np.ndarray  # [bins]
    top: pd.DataFrame  # index, char, document, position, weight
    tokens: int
    sampled: bool = False
    note: str = ""


class RunData:
    """Serving aggregates of one opened run, built by `build()` (streaming; progress in `progress`)."""

    def __init__(self, run: Run):
        self.run = run
        self.has_alpha = "alpha" in run.arrays and any(run.source_labels)
        self.n_slots = len(run.sublayers)
        self.max_sources = run.max_sources
        self.valid = run.valid  # [slots, sources]
        self.columns = column_labels(run.source_labels)
        self.progress = 0.0
        self.ready = threading.Event()
        self.error: str | None = None
        self.agg: Aggregates | None = None
        self._lock = threading.Lock()
        self.token_ids: np.ndarray | None = None  # [tokens] int32, kept in memory by the aggregation pass
        self.doc_ids: np.ndarray | None = None  # [tokens] int64
        self.positions: np.ndarray | None = None  # [tokens] int64

    # ------------------------------------------------------------------------------------------- build

    def build(self, progress: Callable[[float], None] | None = None) -> "RunData":
        with self._lock:
            if self.ready.is_set():
                return self
            try:
                self.agg = self._aggregate()
                # The aggregates live as long as the run is served: move them out of the cyclic garbage collector's
                # reach, so that its full collections (a pause of ~0.1 s over a large run's objects) stop landing
                # in later callbacks. Reference counting still frees them when the run is let go.
                gc.freeze()
            except RunError as err:
                self.error = str(err)
            except Exception as err:  # a bad chunk must not take the server down
                self.error = f"{type(err).__name__}: {err}"
            finally:
                self.progress = 1.0
                self.ready.set()
        return self

    def _aggregate(self) -> Aggregates:
        started = time.perf_counter()

        def progress(fraction: float) -> None:
            self.progress = fraction

        extra = {}
        if self.has_alpha:  # analyses' routing statistics (default window) from the same scan
            try:
                extra["routing"] = RoutingAccumulator.of_run(self.run)
            except (AnalysisError, ValueError) as err:
                self._routing_error = err
        one = Pass(self.run, self.valid, self.has_alpha, progress)
        agg, kept = one.run_pass(extra=extra)
        if "routing" in extra:  # the statistics kept, or the error they raised (the reducer is let go)
            try:
                self._routing = one.results["routing"]
            except (AnalysisError, RunError, ValueError) as err:
                self._routing_error = err
        self.token_ids, self.doc_ids, self.positions = kept.token, kept.document, kept.position
        agg.seconds = time.perf_counter() - started
        return agg

    def routing_stats(self):
        """depthscope.analyses' routing statistics of the run at the default window, taken in the aggregation
        scan (raises what that computation raised)."""
        self.require()
        if "_routing_error" in self.__dict__:
            raise self._routing_error
        if "_routing" not in self.__dict__:
            raise FilterError(f"{self.run.path}: no depth-attention weights to take routing statistics of")
        return self._routing

    def ids(self, name: str, start: int, stop: int) -> np.ndarray:
        """token / document / position of tokens [start, stop) (from memory when the pass kept them)."""
        held = {"token": self.token_ids, "document": self.doc_ids, "position": self.positions}[name]
        if held is not None:
            return held[start:stop]
        return self.run.arrays[name].read(start, stop)

    def take(self, name: str, index: np.ndarray) -> np.ndarray:
        held = {"token": self.token_ids, "document": self.doc_ids, "position": self.positions}[name]
        if held is not None:
            return held[index]
        return self.run.arrays[name][index]

    def require(self) -> Aggregates:
        """The aggregates, building them now if no background thread did; RunError if the build failed."""
        if not self.ready.is_set():
            self.build()
        if self.error:
            raise RunError(self.run.path, self.error)
        return self.agg  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------- tables

    def _frame(self, mean: np.ndarray, std: np.ndarray | None, count: np.ndarray | int) -> pd.DataFrame:
        """Tidy sublayer x source frame from [slots, sources] arrays (valid cells only)."""
        run = self.run
        slot, src = np.nonzero(self.valid)
        counts = np.broadcast_to(np.asarray(count), self.valid.shape) if np.ndim(count) == 0 else count
        return pd.DataFrame({
            "slot": slot,
            "sublayer": np.asarray(run.sublayers)[slot],
            "label": np.asarray(run.sublayer_labels, dtype=object)[slot],
            "source_index": src,
            "source": [run.source_labels[i][j] for i, j in zip(slot, src)],
            "mean": mean[slot, src],
            "std": np.nan if std is None else std[slot, src],
            "count": np.asarray(counts)[slot, src].astype(np.int64),
        })

    def _from_sums(self, total: np.ndarray, sumsq: np.ndarray | None, count: int) -> pd.DataFrame:
        shape = (self.n_slots, self.max_sources)
        c = max(count, 1)
        mean = (total / c).reshape(shape)
        std = None if sumsq is None else np.sqrt(np.maximum(sumsq.reshape(shape) / c - mean ** 2, 0))
        if count == 0:
            mean = np.full(shape, np.nan)
        return self._frame(mean, std, count)

    def routing(self, flt: Filter | None = None) -> RoutingResult:
        """Token-averaged weight matrix (mean and std over tokens) for the tokens `flt` selects."""
        agg = self.require()
        flt = flt or Filter()
        regex = self._compile(flt.regex)
        if not agg.chunk_sum:
            return RoutingResult(self._from_sums(np.zeros(self.n_slots * self.max_sources), None, 0), 0)
        start, stop = self._bounds(flt)
        full_range = start == 0 and stop == agg.n_tokens
        if flt.document is None and regex is None:
            if full_range:
                return RoutingResult(self._from_sums(sum(agg.chunk_sum), sum(agg.chunk_sumsq), agg.n_tokens), agg.n_tokens)
            return self._range_exact(agg, start, stop)
        if regex is not None and flt.document is None and full_range and agg.token_sum is not None:
            ids = self._matching_ids(regex, agg.token_sum.shape[0])
            count = int(agg.token_count[ids].sum())
            return RoutingResult(self._from_sums(agg.token_sum[ids].sum(0), None, count), count,
                                 note="std not kept per token text (mean and count exact)")
        if flt.document is not None and regex is None and (start, stop) == (0, agg.n_tokens) \
                and flt.document in agg.doc_index:
            i = agg.doc_index[flt.document]
            count = agg.doc_count[i]
            return RoutingResult(self._from_sums(agg.doc_sum[i], None, count), count)
        return self._read_filtered(agg, flt, regex, start, stop)

    def _bounds(self, flt: Filter) -> tuple[int, int]:
        n = self.run.n_tokens
        start = 0 if flt.start is None else max(0, int(flt.start))
        stop = n if flt.stop is None else min(n, int(flt.stop))
        if flt.document is not None:
            span = (self.agg.doc_span if self.agg else {}).get(int(flt.document))
            if span is None:
                raise FilterError(f"no document {flt.document} in this run")
            start, stop = max(start, span[0]), min(stop, span[1])
        if stop <= start:
            raise FilterError(f"no tokens in the range {start}..{stop}")
        return start, stop

    @staticmethod
    def _compile(regex: str | None) -> str | None:
        """The pattern, checked (FilterError when it is not a regular expression); None for no text filter."""
        if not regex:
            return None
        try:
            compile_pattern(regex)
        except PatternError as err:
            raise FilterError(str(err)) from None
        return regex

    def _matching_ids(self, regex: str, vocab: int) -> np.ndarray:
        return np.nonzero(match_table(regex, vocab, self.run.token_label))[0]

    @property
    def chunks(self) -> ChunkCache:
        """Decoded chunks of alpha, shared by the callbacks (a few, least recently used dropped)."""
        cache = self.__dict__.get("_chunks")
        if cache is None:
            agg = self.require()
            cache = ChunkCache(self.run.alpha, agg.chunk_starts, agg.chunk_stops, self.valid)
            self.__dict__["_chunks"] = cache
        return cache

    def clear_caches(self) -> None:
        """Forget decoded chunks (the benchmark times uncached answers)."""
        if "_chunks" in self.__dict__:
            self._chunks.clear()

    def _range_exact(self, agg: Aggregates, start: int, stop: int) -> RoutingResult:
        """Whole chunks from the partial sums, the (at most two) edge chunks read from disk: exact. An edge
        covering more than half its chunk is the chunk's sums minus the tokens left out (fewer to convert)."""
        total = np.zeros(self.n_slots * self.max_sources)
        sumsq = np.zeros_like(total)
        count = 0
        for a, b, s1, s2 in zip(agg.chunk_starts, agg.chunk_stops, agg.chunk_sum, agg.chunk_sumsq):
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi:
                continue
            if (lo, hi) == (a, b) or 2 * (hi - lo) > b - a:
                total += s1
                sumsq += s2
                spans, sign = [(a, lo), (hi, b)], -1.0
            else:
                spans, sign = [(lo, hi)], 1.0
            for x, y in spans:
                if y > x:
                    af = self._read_cells(x, y)
                    total += sign * af.sum(0, dtype=np.float64)
                    sumsq += sign * np.einsum("ij,ij->j", af, af, dtype=np.float64)
            count += hi - lo
        return RoutingResult(self._from_sums(total, sumsq, count), count)

    def _read_cells(self, start: int, stop: int) -> np.ndarray:
        """alpha of tokens [start, stop) as [tokens, cells] float32 (invalid cells 0), through the chunk cache."""
        return self.chunks.cells(start, stop)

    def _plan_reads(self, start: int, stop: int) -> tuple[list[tuple[int, int]], bool]:
        """Token spans to read for [start, stop): all of it within READ_BUDGET, else evenly spaced chunks
        (their middle one first, so a one-chunk sample is not the start of the range)."""
        if stop - start <= READ_BUDGET:
            return [(start, stop)], False
        size = self.run.chunk_tokens
        first, last = start // size, (stop - 1) // size
        chunks = np.arange(first, last + 1)
        want = min(max(1, READ_BUDGET // size), len(chunks))
        pick = chunks[((np.arange(want) + 0.5) * len(chunks) / want).astype(int)]
        spans = [(max(start, int(c) * size), min(stop, (int(c) + 1) * size)) for c in np.unique(pick)]
        if sum(b - a for a, b in spans) > READ_BUDGET:  # tiny chunks: fall back to one bounded block per pick
            spans = spans[: max(1, READ_BUDGET // max(size, 1))]
        return spans, True

    def _keep(self, flt: Filter, regex: str | None) -> Callable[[np.ndarray], np.ndarray] | None:
        """token indices -> bool mask of those the document / text filter selects (None: no such filter)."""
        if flt.document is None and regex is None:
            return None

        def keep(index: np.ndarray) -> np.ndarray:
            mask = np.ones(len(index), dtype=bool)
            if flt.document is not None:
                mask &= self.take("document", index) == int(flt.document)
            if regex is not None:
                mask &= matches(self.take("token", index), regex, self.run.token_label)
            return mask
        return keep

    def _select(self, agg: Aggregates, flt: Filter, regex, start: int, stop: int):
        """(cells [tokens, cells], token index [tokens], sampled, note) of the selected tokens in the planned spans."""
        spans, sampled = self._plan_reads(start, stop)
        keep = self._keep(flt, regex)
        parts, index = [], []
        for a, b in spans:
            af = self._read_cells(a, b)
            idx = np.arange(a, b)
            mask = keep(idx) if keep is not None else np.ones(b - a, dtype=bool)
            parts.append(af[mask])
            index.append(idx[mask])
        cells = np.concatenate(parts) if parts else np.zeros((0, self.n_slots * self.max_sources), np.float32)
        idx = np.concatenate(index) if index else np.zeros(0, np.int64)
        return cells, idx, sampled, self._sample_note(spans, start, stop) if sampled else ""

    @staticmethod
    def _sample_note(spans: list[tuple[int, int]], start: int, stop: int) -> str:
        read = sum(b - a for a, b in spans)
        return f"sampled: {read:,} of {stop - start:,} tokens in range read ({len(spans)} chunks evenly spaced)"

    def _read_filtered(self, agg: Aggregates, flt: Filter, regex, start: int, stop: int) -> RoutingResult:
        cells, _, sampled, note = self._select(agg, flt, regex, start, stop)
        count = len(cells)
        frame = self._from_sums(cells.sum(0, dtype=np.float64), np.square(cells).sum(0, dtype=np.float64), count)
        return RoutingResult(frame, count, sampled, note)

    def cell(self, slot: int, source: int, flt: Filter | None = None) -> CellResult:
        """Distribution over tokens of weight alpha[slot, source], and the tokens with the largest weight
        (see depthscope.dashboard.cell_query for what is exact and what is sampled)."""
        agg = self.require()
        flt = flt or Filter()
        if not (0 <= slot < self.n_slots and 0 <= source < self.max_sources and self.valid[slot, source]):
            raise FilterError(f"no source {source} at sublayer-axis position {slot}")
        c = slot * self.max_sources + source
        index = agg.cells
        lo, hi = index.hist_range
        edges = np.linspace(lo, hi, CELL_BINS + 1)
        if flt.empty:
            keep_top = index.top_index[:, c] >= 0
            return CellResult(edges, index.hist[c].copy(),
                              self._top_frame(index.top_index[keep_top, c], index.top_value[keep_top, c]), agg.n_tokens)
        regex = self._compile(flt.regex)
        start, stop = self._bounds(flt)
        keep = self._keep(flt, regex)
        seen, notes, sampled = Seen(), [], False
        if keep is None and index.keep_chunks:
            counts = range_counts(index, self.chunks, c, start, stop, seen)
        elif flt.document is None and (start, stop) == (0, agg.n_tokens) and index.id_hist is not None:
            counts = index.id_hist[self._matching_ids(regex, index.vocab), c].sum(0).astype(np.int64)
        else:
            spans, sampled = self._plan_reads(start, stop)
            for a, b in spans:
                for i in overlapping(self.chunks, a, b):
                    read_span(self.chunks, c, i, a, b, seen, keep)
            values = np.concatenate(seen.value) if seen.value else np.zeros(0, np.float32)
            counts = hist_of(values, lo, hi)
            if sampled:
                notes.append(self._sample_note(spans, start, stop))
        top_i, top_v, exact = top_tokens(index, self.chunks, c, start, stop, keep, seen, READ_BUDGET)
        if not exact:
            sampled = True
            notes.append("top tokens: the largest among those read and each chunk's top list (larger ones may exist)")
        return CellResult(edges, counts, self._top_frame(top_i, top_v), int(counts.sum()), sampled, "; ".join(notes))

    def _top_frame(self, index: np.ndarray, weight: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame({"index": index.astype(np.int64), "weight": weight.astype(float)})
        if len(frame) and "token" in self.run.arrays:
            tok = self.take("token", frame["index"].to_numpy())
            frame["char"] = self.run.token_labels(tok)
            frame["context"] = [self.context(int(i)) for i in frame["index"]]
        if len(frame) and "document" in self.run.arrays:
            frame["document"] = self.take("document", frame["index"].to_numpy())
        if len(frame) and "position" in self.run.arrays:
            frame["position"] = self.take("position", frame["index"].to_numpy())
        return frame

    def context(self, index: int, before: int = 12, after: int = 4) -> str:
        """A few characters around token `index`, the token itself in [brackets]."""
        if "token" not in self.run.arrays:
            return ""
        a, b = max(0, index - before), min(self.run.n_tokens, index + after + 1)
        tok = self.ids("token", a, b)
        text = self.run.token_labels(tok)
        text[index - a] = f"[{text[index - a]}]"
        return "".join(text)

    # ------------------------------------------------------------------------------------------- signal

    def rms_profile(self, name: str, percentiles=(5, 25, 50, 75, 95)) -> pd.DataFrame:
        """Per slot: mean and percentiles over tokens of one RMS quantity (depthscope.analyses' Moments)."""
        agg = self.require()
        run = self.run
        if name not in agg.rms:
            return pd.DataFrame(columns=["slot", "sublayer", "label", "quantity", "mean", "count",
                                         *[f"p{p}" for p in percentiles]])
        moments = agg.rms[name]
        frame = pd.DataFrame({"slot": np.arange(self.n_slots), "sublayer": run.sublayers, "label": run.sublayer_labels,
                              "quantity": name, "mean": moments.mean, "count": moments.count.astype(np.int64)})
        for p in percentiles:
            frame[f"p{p}"] = moments.percentile(p)
        return frame

    # ------------------------------------------------------------------------------------------- tokens

    def _kernel(self, k: float | None):
        """The run's routing kernel (depthscope.analyses), kept per window k."""
        kernels = self.__dict__.setdefault("_kernels", {})
        if k not in kernels:
            kernels[k] = routing_kernel(self.run, k)
        return kernels[k]

    def _token_stats(self, start: int, stop: int, k: float | None) -> dict[str, np.ndarray]:
        """Per-token statistics [tokens, slots] of [start, stop), computed by depthscope.analyses; the last few
        windows are kept (one page view asks for the same window several times)."""
        recent = self.__dict__.setdefault("_recent_stats", {})
        key = (int(start), int(stop), k)
        if key not in recent:
            recent[key] = self._compute_token_stats(start, stop, k)
            while len(recent) > 4:
                recent.pop(next(iter(recent)))
        return recent[key]

    def _compute_token_stats(self, start: int, stop: int, k: float | None) -> dict[str, np.ndarray]:
        stats = token_stats(self.run, start, stop, k, kernel=self._kernel(k))
        return {name: stats[name] for name in TOKEN_STATS}

    def stat_kinds(self, start: int, stop: int, slot: int, k: float | None = None) -> dict[str, str]:
        """Per statistic of TOKEN_STATS over tokens [start, stop) at `slot`: "varies" (differs between tokens),
        "constant" (the same for every token) or "undefined" (NaN for every token, e.g. long-range mass over
        Hyper-Connection streams, which have no depth distance)."""
        if not self.has_alpha or stop <= start:
            return {name: "undefined" for name in TOKEN_STATS}
        out = {}
        for name, v in self._token_stats(start, min(stop, start + WINDOW_MAX), k).items():
            column = v[:, slot]  # [tokens]
            finite = column[np.isfinite(column)]
            out[name] = "undefined" if not len(finite) else ("varies" if np.ptp(finite) > 1e-6 else "constant")
        return out

    def token_window(self, start: int, stop: int, slot: int, k: float | None = None) -> pd.DataFrame:
        """Per token of [start, stop) (at most WINDOW_MAX): index, char, document, position, loss and, at `slot`,
        the per-token routing statistics of depthscope.analyses (locality, long_range, embedding,
        norm_entropy, eff_sources)."""
        run = self.run
        start = max(0, int(start))
        stop = min(run.n_tokens, int(stop), start + WINDOW_MAX)
        frame = run.tokens_frame(start, stop)
        if self.has_alpha and 0 <= slot < self.n_slots and stop > start:
            for name, v in self._token_stats(start, stop, k).items():
                frame[name] = v[:, slot]
        return frame

    def stat_matrix(self, start: int, stop: int, stat: str, k: float | None = None
                    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Token x slot matrix of a per-token statistic over a window: (values [tokens, slots], slot labels,
        token index). stat: one of TOKEN_STATS (from depthscope.analyses) or an RMS quantity."""
        run = self.run
        start = max(0, int(start))
        stop = min(run.n_tokens, int(stop), start + WINDOW_MAX)
        index = np.arange(start, stop)
        if stat in RMS_NAMES:
            if stat not in run.arrays:
                raise FilterError(f"this run did not record {stat}")
            return run.arrays[stat].read(start, stop).astype(np.float64), run.sublayer_labels, index
        if stat not in TOKEN_STATS:
            raise FilterError(f"unknown statistic {stat!r}")
        self._need_alpha()
        return self._token_stats(start, stop, k)[stat], run.sublayer_labels, index

    def _need_alpha(self) -> None:
        if not self.has_alpha:
            raise FilterError("this run recorded no depth-attention weights (a residual stream has none): "
                              "its norms and gradients are on the Signal and Gradients pages")

    def token_matrix(self, index: int) -> pd.DataFrame:
        """Sublayer x source weights of one token (tidy, like `routing`)."""
        self._need_alpha()
        a = self.run.alpha[int(index)].astype(np.float64)  # [slots, sources]
        return self._frame(a, None, 1)

    def token_norms(self, index: int) -> pd.DataFrame:
        """Per slot RMS quantities of one token: slot, sublayer, label, quantity, value."""
        rows = []
        for name in RMS_NAMES:
            if name in self.run.arrays:
                x = self.run.arrays[name][int(index)]
                for i, v in enumerate(x):
                    rows.append((i, self.run.sublayers[i], self.run.sublayer_labels[i], name, float(v)))
        return pd.DataFrame(rows, columns=["slot", "sublayer", "label", "quantity", "value"])

    def documents(self) -> pd.DataFrame:
        agg = self.require()
        rows = [(d, s[0], s[1], s[2]) for d, s in sorted(agg.doc_span.items())]
        return pd.DataFrame(rows, columns=["document", "start", "stop", "tokens"])


class SummaryData:
    """Serving data of a summary-only run (no per-token arrays): means and variances from its summaries."""

    def __init__(self, run: Run):
        self.run = run
        self.frames = run.summary or {}
        self.columns = column_labels(run.source_labels)
        self.has_alpha = "alpha" in self.frames and len(self.frames["alpha"]) > 0
        self.progress = 1.0
        self.error = None
        self.ready = threading.Event()
        self.ready.set()

    def routing(self, flt: Filter | None = None) -> RoutingResult:
        if flt is not None and not flt.empty:
            raise FilterError("this run kept summaries only (no per-token arrays): filters are not available")
        alpha = self.frames["alpha"]
        slot = alpha["sublayer"].map({s: i for i, s in enumerate(self.run.sublayers)})
        frame = pd.DataFrame({"slot": slot, "sublayer": alpha["sublayer"], "label": alpha["label"],
                              "source_index": alpha["source_index"], "source": alpha["source"],
                              "mean": alpha["mean"], "std": np.sqrt(alpha["var"]), "count": alpha["count"]})
        tokens = int(self.frames["info"]["tokens"].iloc[0]) if "info" in self.frames else 0
        return RoutingResult(frame, tokens, note="from the run's running summaries")

    def rms_profile(self, name: str, percentiles=(5, 25, 50, 75, 95)) -> pd.DataFrame:
        norms = self.frames.get("norms")
        if norms is None:
            return pd.DataFrame()
        part = norms[norms["quantity"] == name]
        slot = part["sublayer"].map({s: i for i, s in enumerate(self.run.sublayers)})
        frame = pd.DataFrame({"slot": slot, "sublayer": part["sublayer"], "label": part["label"], "quantity": name,
                              "mean": part["mean"], "count": part["count"]})
        for p in percentiles:
            frame[f"p{p}"] = np.nan  # a summary keeps moments, not quantiles
        return frame.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- small helpers


def difference_frame(a: pd.DataFrame, b: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """a - b of two tidy sublayer x source frames, matched by (consuming sublayer label, source label); rows
    present in only one run are dropped. Keeps a's slot / source_index (for clicks) and both counts."""
    keys = ["label", "source"]
    merged = a.merge(b[keys + [value, "count"]], on=keys, how="inner", suffixes=("", "_b"))
    merged[value] = merged[value] - merged[value + "_b"]
    merged["std"] = np.nan
    return merged.drop(columns=[value + "_b"])
