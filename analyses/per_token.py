"""Per-token drill-down: the routing statistics of `routing.py` for each (token, sublayer) of a token range.

`token_table(run, start, stop)` has one row per (token, sublayer with sources): token index, token id and
its character, document, position, loss, sublayer, sublayer_label, kind, and per token: locality, long_range,
embedding, entropy, norm_entropy, eff_sources, top_source (label), top_distance (NaN for the embedding),
top_embedding, jump; plus input_rms / output_rms / residual_rms / grad_rms where recorded. Definitions and the
window k: see `depthscope.analyses.routing`. Only tokens [start, stop) are read (at most `max_tokens`, default
20,000, to keep the table small: it has tokens x sublayers rows).

`token_weights(run, token)` is the tidy weight table of one token: sublayer, source, source_label, distance,
alpha, share.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from depthscope.models import TOKEN_STATISTICS

from .errors import AnalysisError
from .routing import is_signed
from .routing_chunk import ChunkKernel
from .runs import PER_SUBLAYER, as_run, require, run_name
from .sources import run_geometry

MAX_TOKENS = 20_000


def routing_kernel(run, k: float | None = None) -> ChunkKernel:
    """The routing kernel of a run (its source geometry, window k, signed or not): the one that sums the
    aggregate tables (routing_stats) and gives the per-token values (ChunkKernel.token_stats)."""
    run = as_run(run)
    return ChunkKernel(run_geometry(run), k, is_signed(run), run_name(run))


def token_stats(run, start: int, stop: int, k: float | None = None, kernel: ChunkKernel | None = None
                ) -> dict[str, np.ndarray]:
    """Per-token routing statistics of tokens [start, stop): name -> [tokens, slots] (ChunkKernel.token_stats:
    NaN at slots without sources). kernel: a routing_kernel(run, k) kept by the caller (built otherwise)."""
    run = as_run(run)
    require(run, ["alpha"], "per-token statistics")
    kernel = routing_kernel(run, k) if kernel is None else kernel
    chunk = next(iter(run.iter_chunks(["alpha"], stop - start, start=start, stop=stop)))
    return kernel.token_stats(chunk["alpha"], start)


def token_table(run, start: int = 0, stop: int | None = None, k: float | None = None,
                max_tokens: int = MAX_TOKENS) -> pd.DataFrame:
    """Per (token, sublayer) routing statistics for tokens [start, stop) (module docstring)."""
    run = as_run(run)
    require(run, ["alpha"], "the per-token table")
    stop = run.n_tokens if stop is None else min(stop, run.n_tokens)
    if not 0 <= start < stop:
        raise AnalysisError(run_name(run), f"empty token range [{start}, {stop}) of a run with {run.n_tokens} tokens")
    if stop - start > max_tokens:
        raise AnalysisError(run_name(run), f"{stop - start} tokens asked for; the per-token table is limited to "
                                           f"{max_tokens} (pass max_tokens= to raise it)")
    geo = run_geometry(run)
    kernel = routing_kernel(run, k)
    names = ["alpha"] + [n for n in ("token", "document", "position", "loss", *PER_SUBLAYER) if n in run.captured]
    chunk = next(iter(run.iter_chunks(names, stop - start, start=start, stop=stop)))
    stats = kernel.token_stats(chunk["alpha"], start)
    t = stop - start
    slots = np.nonzero(geo.routed)[0]
    tok_index = np.repeat(np.arange(start, stop), len(slots))
    slot_index = np.tile(slots, t)
    frame = pd.DataFrame({"index": tok_index})
    for name in ("token", "document", "position", "loss"):
        if name in chunk:
            frame[name] = np.repeat(np.asarray(chunk[name]), len(slots))
    if "token" in frame:
        frame["char"] = run.token_labels(frame["token"].to_numpy())
    frame["sublayer"] = np.asarray(geo.sublayers, dtype=np.int64)[slot_index]
    frame["sublayer_label"] = np.asarray(geo.sublayer_labels, dtype=object)[slot_index]
    frame["kind"] = np.asarray(geo.kinds, dtype=object)[slot_index]
    for name in TOKEN_STATISTICS:
        frame[name] = stats[name][:, slots].ravel()
    top = stats["top"][:, slots]
    frame["top_source"] = [geo.source_labels[i][j] for i, j in zip(slot_index, top.ravel())]
    for name in ("top_distance", "top_embedding", "jump"):
        frame[name] = stats[name][:, slots].ravel()
    for name in PER_SUBLAYER:
        if name in chunk:
            frame[name] = np.asarray(chunk[name])[:, slots].ravel()
    return frame


def token_weights(run, token: int) -> pd.DataFrame:
    """The depth-attention weights of one token: sublayer, sublayer_label, kind, source, source_label, distance,
    is_embedding, alpha (raw), share (|alpha| normalised over the sublayer's sources)."""
    run = as_run(run)
    require(run, ["alpha"], "token weights")
    if not 0 <= token < run.n_tokens:
        raise AnalysisError(run_name(run), f"token {token} out of range for {run.n_tokens} tokens")
    geo = run_geometry(run)
    chunk = next(iter(run.iter_chunks(["alpha"], 1, start=token, stop=token + 1)))
    raw = np.asarray(chunk["alpha"], dtype=np.float64)[0]  # [n, S]
    slot, src = np.nonzero(geo.valid)
    mag = np.abs(np.where(geo.valid, raw, 0.0))
    share = mag / np.maximum(mag.sum(1, keepdims=True), 1e-300)
    return pd.DataFrame({
        **geo.columns(slot, src),
        "alpha": raw[slot, src],
        "share": share[slot, src],
    })
