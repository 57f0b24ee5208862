"""The threaded aggregation pass (aggregate.py, chunk_summary.py, half_table.py) against a straightforward
computation over the whole run in plain numpy: recorded runs, and synthetic runs written with the probe's
RunWriter (signed weights with ties and -0, several shards of chunks, float32 storage, a NaN weight)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from depthscope.analyses import DASHBOARD_BINS
from depthscope.analyses.errors import NaNWeightError
from depthscope.dashboard import aggregate as A
from depthscope.dashboard.cell_index import CELL_BINS, TOP_K, bin_of, chunk_top, hist_range_of
from depthscope.dashboard.chunk_summary import ChunkPlan, summarize_alpha
from depthscope.dashboard.data import Filter, RunData
from depthscope.dashboard.half_table import (HALF_VALUES, NAN_BIN, bin_floors, bin_table, half_to_float32,
                                             order_key)
from depthscope.probe import RunWriter, open_run
from depthscope.probe.batch import BatchRecord
from depthscope.probe.layout import Layout


def write_run(path: Path, alpha: np.ndarray, n_sources: list[int], chunk_tokens: int, dtype: str = "float16",
              batch: int = 50, seed: int = 0, shards: int = 1) -> Path:
    """A run of alpha [tokens, slots, sources] (NaN beyond each row's sources is set here), with tokens, documents
    and RMS values, written `batch` tokens at a time by `shards` ranks (consecutive token spans)."""
    rng = np.random.default_rng(seed)
    t, n, s = alpha.shape
    labels = [f"attn{i}" for i in range(n)]
    sources = [[f"s{j}" for j in range(k)] for k in n_sources]
    lay = Layout(sublayers=list(range(1, n + 1)), sublayer_labels=labels, source_labels=sources,
                 quantities=["alpha", "input_rms", "output_rms"], alpha_dtype=dtype)
    alpha = alpha.copy()
    alpha[:, ~lay.valid] = np.nan
    tokens = rng.integers(97, 123, t)
    docs = np.arange(t) // 37
    rms = np.exp(rng.standard_normal((t, n))).astype(np.float32)
    rms[3, 1] = np.nan  # a missing value: not counted
    bounds = np.linspace(0, t, shards + 1).astype(int)
    for rank in reversed(range(shards)):  # rank 0 (the manifest) last
        writer = RunWriter(path, chunk_tokens=chunk_tokens, overwrite=rank == shards - 1, rank=rank,
                           world_size=shards, meta={"tokenizer": {"kind": "bytes-utf8"}, "corpus": "synthetic"})
        writer.begin(lay, {})
        for step, a in enumerate(range(bounds[rank], bounds[rank + 1], batch)):
            b = min(a + batch, bounds[rank + 1])

            def one(x, dt=None):
                return torch.from_numpy(np.ascontiguousarray(x[a:b] if dt is None else x[a:b].astype(dt)))[None]

            writer.write(BatchRecord(
                layout=lay, step=step, token=one(tokens, np.int64), document=one(docs, np.int64),
                position=one(np.arange(t) % 37, np.int64), loss=one(np.ones(t, np.float32)),
                alpha=one(alpha, np.float16 if dtype == "float16" else np.float32),
                input_rms=one(rms), output_rms=one(rms * 2)))
        writer.close(True)
    return path


def reference(run) -> dict:
    """Every aggregate the pass keeps, computed the straightforward way over the whole run at once."""
    valid = run.valid  # [slots, sources]
    n, s = valid.shape
    af = run.alpha[:].astype(np.float32).reshape(run.n_tokens, n * s)  # [tokens, cells]
    af[:, ~valid.reshape(-1)] = 0.0
    tok = np.clip(run.token[:].astype(np.int64), 0, 255)
    doc = run.document[:]
    spans = run.alpha.blocks()
    lo, hi = hist_range_of(af[: spans[0][1]], valid.reshape(-1))
    bins = bin_of(af, lo, hi)  # [tokens, cells]
    masked = np.where(valid[None], af.reshape(-1, n, s), -np.inf)  # [tokens, slots, sources]
    top = masked.argmax(-1)[:, valid.any(-1)] + (np.arange(n) * s)[valid.any(-1)]
    per_cell = lambda rows: np.stack([np.bincount(bins[rows, c], minlength=CELL_BINS) for c in range(n * s)])
    out = {"hist_range": (lo, hi), "spans": spans,
           "chunk_sum": [af[a:b].sum(0, dtype=np.float64) for a, b in spans],
           "chunk_sumsq": [np.square(af[a:b].astype(np.float64)).sum(0) for a, b in spans],
           "chunk_hist": [per_cell(np.arange(a, b)) for a, b in spans],
           "hist": per_cell(np.arange(run.n_tokens)),
           "top_source": np.bincount(top.ravel(), minlength=n * s).reshape(n, s),
           "token_count": np.bincount(tok, minlength=256),
           "token_sum": np.stack([af[tok == i].sum(0, dtype=np.float64) for i in range(256)]),
           "id_hist": {i: per_cell(np.flatnonzero(tok == i)) for i in np.unique(tok)},
           "doc_sum": {d: af[doc == d].sum(0, dtype=np.float64) for d in np.unique(doc)},
           "doc_count": {d: int((doc == d).sum()) for d in np.unique(doc)},
           "af": af}
    for name in A.RMS_NAMES:
        if name in run.arrays:
            x = run.arrays[name][:]
            ok = np.isfinite(x) & (x > 0)
            lo, hi, bins = DASHBOARD_BINS.lo, DASHBOARD_BINS.hi, DASHBOARD_BINS.bins
            b = np.clip(((np.log10(np.where(ok, x, 1.0)) - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
            out["rms_" + name] = (np.stack([np.bincount(b[ok[:, i], i], minlength=bins) for i in range(n)]),
                                  np.where(ok, x, 0).sum(0, dtype=np.float64), ok.sum(0))
    return out


def check_against_reference(d: RunData) -> None:
    run, agg = d.run, d.agg
    assert d.error is None, d.error
    ref = reference(run)
    af = ref["af"]
    cells = agg.cells
    assert cells.hist_range == ref["hist_range"]
    assert [(a, b) for a, b in zip(agg.chunk_starts, agg.chunk_stops)] == ref["spans"]
    for got, want in zip(agg.chunk_sum, ref["chunk_sum"]):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-9)
    for got, want in zip(agg.chunk_sumsq, ref["chunk_sumsq"]):
        assert np.allclose(got, want, rtol=1e-12, atol=1e-9)
    assert all(np.array_equal(got, want) for got, want in zip(cells.chunk_hist, ref["chunk_hist"]))
    assert np.array_equal(cells.hist, ref["hist"])
    assert np.array_equal(agg.top_source, ref["top_source"])
    assert np.array_equal(agg.token_count, ref["token_count"])
    assert np.allclose(agg.token_sum, ref["token_sum"], rtol=1e-6, atol=1e-6)
    for i, hist in ref["id_hist"].items():
        assert np.array_equal(cells.id_hist[i], hist), i
    assert cells.id_hist.sum() == af.size  # ids not in the run have none
    assert {int(k): v for k, v in ref["doc_count"].items()} == {k: agg.doc_count[r] for k, r in agg.doc_index.items()}
    for k, r in agg.doc_index.items():
        assert np.allclose(agg.doc_sum[r], ref["doc_sum"][k], rtol=1e-6, atol=1e-6)
    for (a, b), value, index in zip(ref["spans"], cells.chunk_top_value, cells.chunk_top_index):
        want = -np.sort(-af[a:b], axis=0)[:TOP_K]  # [k, cells]
        valid = d.valid.reshape(-1)
        assert np.array_equal(value[: len(want), valid], want[:, valid])
        rows = np.where(index >= 0, index, 0)
        assert np.array_equal(np.take_along_axis(af, rows, 0)[: len(want), valid], want[:, valid])
        listed = index[: len(want), valid]
        assert (index[:, ~valid] == -1).all() and (index[len(want):] == -1).all()
        assert ((listed >= a) & (listed < b)).all()
    for name in A.RMS_NAMES:
        if "rms_" + name in ref:
            hist, total, count = ref["rms_" + name]
            assert np.array_equal(agg.rms[name].hist, hist)
            assert np.allclose(agg.rms[name].sum, total) and np.array_equal(agg.rms[name].count, count)
    assert np.array_equal(d.token_ids, run.token[:]) and np.array_equal(d.doc_ids, run.document[:])


@pytest.mark.parametrize("name", ["full", "block"])
def test_recorded_runs_match_the_straightforward_computation(catalogue, name):
    check_against_reference(RunData(open_run(catalogue.resolve(name))).build())


def _signed_alpha(tokens: int, n_sources: list[int], seed: int = 0) -> np.ndarray:
    """[tokens, slots, sources] weights in [-0.5, 1.5], with exact ties (two equal maxima) and -0.0 entries."""
    rng = np.random.default_rng(seed)
    n, s = len(n_sources), max(n_sources)
    alpha = (rng.random((tokens, n, s)) * 2 - 0.5).astype(np.float16).astype(np.float32)
    alpha[::5, 2, :2] = 1.25  # ties for the largest weight: the first one counts
    alpha[::7, 3, 0] = -0.0
    alpha[::7, 3, 1:] = -0.25  # -0 is the largest here
    alpha[::11, 1, 1] = alpha[::11, 1, 0]
    return alpha


@pytest.mark.parametrize("dtype,shards", [("float16", 1), ("float32", 1), ("float16", 2)])
def test_signed_multi_chunk_runs_match_the_straightforward_computation(tmp_path, dtype, shards):
    n_sources = [1, 2, 3, 4, 0, 5]  # one position without weights
    alpha = _signed_alpha(533, n_sources)
    path = write_run(tmp_path / "signed", alpha, n_sources, chunk_tokens=64, dtype=dtype, shards=shards)
    d = RunData(open_run(path)).build()
    assert d.agg.cells.hist_range[0] < 0  # widened for negative weights
    check_against_reference(d)
    if shards > 1:  # chunks follow the stored blocks (a short one ends shard 0): the queries still add up
        assert (256, 266) in zip(d.agg.chunk_starts, d.agg.chunk_stops)
        a = alpha.astype(np.float16).astype(np.float64)
        for start, stop in [(5, 300), (250, 400), (0, 533)]:
            f = d.routing(Filter(start=start, stop=stop)).frame
            assert np.allclose(f["mean"], a[start:stop].mean(0)[f["slot"], f["source_index"]], atol=1e-6)
            res = d.cell(3, 2, Filter(start=start, stop=stop))
            assert res.counts.sum() == stop - start and not res.sampled
            assert np.allclose(res.top["weight"], np.sort(a[start:stop, 3, 2])[::-1][:TOP_K])


def test_one_worker_and_several_give_the_same_aggregates(catalogue):
    run = open_run(catalogue.resolve("full"))
    one, _ = A.Pass(run, run.valid, True, lambda f: None).run_pass(workers=1)
    many, _ = A.Pass(run, run.valid, True, lambda f: None).run_pass(workers=3)
    for got, want in zip(one.chunk_sum + one.doc_sum, many.chunk_sum + many.doc_sum):
        assert np.array_equal(got, want)  # folded in chunk order: even the float rounding is the same
    assert np.array_equal(one.token_sum, many.token_sum) and np.array_equal(one.cells.id_hist, many.cells.id_hist)
    assert np.array_equal(one.cells.top_index, many.cells.top_index)


def test_a_nan_weight_in_a_later_chunk_names_the_chunk_file(tmp_path):
    n_sources = [1, 2, 3]
    alpha = np.random.default_rng(0).random((300, 3, 3)).astype(np.float32)
    alpha[250, 2, 1] = np.nan
    d = RunData(open_run(write_run(tmp_path / "nan", alpha, n_sources, chunk_tokens=64))).build()
    assert d.error and "NaN" in d.error and "/c/3/" in d.error, d.error


def test_half_tables_agree_with_float_arithmetic():
    finite = np.isfinite(HALF_VALUES)
    for lo, hi in [(0.0, 1.0), (-1.0, 2.0)]:
        table = bin_table(lo, hi)
        assert np.array_equal(table[finite], bin_of(HALF_VALUES[finite], lo, hi))
        assert (table[np.isnan(HALF_VALUES)] == NAN_BIN).all()
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)[~np.isnan(HALF_VALUES)]
    values = bits.view(np.float16).astype(np.float64)
    key = order_key(bits)
    order = np.argsort(key, kind="stable")
    assert (np.diff(values[order]) >= 0).all()  # key order is the float order
    assert order_key(np.array([0x8000], np.uint16))[0] == order_key(np.array([0x0000, 0x8001], np.uint16))[0]
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(64, 1024)  # [rows, cols]
    got, want = half_to_float32(every), every.astype(np.float32)
    assert np.array_equal(got, want, equal_nan=True) and got.dtype == np.float32


def test_bin_floors_bound_every_weight_of_their_bin_and_above():
    for lo, hi in [(0.0, 1.0), (-1.0, 2.0)]:
        table = bin_table(lo, hi)
        floors = bin_floors(table)
        finite = np.isfinite(HALF_VALUES)
        for t in range(CELL_BINS):
            above = finite & (table >= t)
            assert (HALF_VALUES[above] >= floors[t]).all() and (HALF_VALUES[finite & (HALF_VALUES >= floors[t])]
                                                                  .size == above.sum())


def test_chunk_top_with_a_floor_equals_the_sampled_answer():
    rng = np.random.default_rng(5)
    af = (rng.random((3000, 6)) ** 4).astype(np.float16).astype(np.float32)  # [tokens, cells]
    af[:, 4] = 0.5  # ties
    valid = np.array([True] * 5 + [False])
    kth = -np.sort(-af, axis=0)[TOP_K - 1]  # [cells] the exact k-th largest: the tightest floor
    for floor in (kth, kth - 0.01, np.where([True, False, True, False, True, True], kth, np.nan)):
        got = chunk_top(af, TOP_K, valid, floor.astype(np.float32))
        want = chunk_top(af, TOP_K, valid)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert np.array_equal(chunk_top(af, TOP_K, valid)[0][:, :5], -np.sort(-af[:, :5], axis=0)[:TOP_K])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_chunk_summary_with_a_ragged_mask_and_few_tokens(dtype):
    valid = np.array([[True, False, True], [False, False, False], [False, True, True]])  # [slots, sources]
    rng = np.random.default_rng(3)
    block = (rng.random((5, 3, 3)) - 0.2).astype(dtype)  # fewer tokens than TOP_K
    block[:, ~valid] = np.nan
    tokens, docs = np.array([3, 1, 3, 2, 1]), np.array([0, 0, 1, 1, 1])
    plan = ChunkPlan.make(valid, np.dtype(dtype), (-1.0, 1.0), by_token=True, id_hist=True)
    got = summarize_alpha(plan, block, tokens, docs)
    a = block.astype(np.float32).reshape(5, 9)[:, valid.reshape(-1)]  # [tokens, V]
    assert np.allclose(got.total, a.sum(0)) and np.allclose(got.sumsq, (a.astype(np.float64) ** 2).sum(0))
    assert got.ids.tolist() == [1, 2, 3] and got.id_tokens.tolist() == [2, 1, 2]
    for j, i in enumerate(got.ids):
        for c in range(a.shape[1]):
            assert np.array_equal(got.id_counts[j, c], np.bincount(bin_of(a[tokens == i, c], -1.0, 1.0),
                                                                   minlength=CELL_BINS))
    for g, (dd, tt) in enumerate(zip(got.group_doc, got.group_tok)):
        rows = (docs == dd) & (tokens == tt)
        assert got.group_count[g] == rows.sum() and np.allclose(got.group_sum[g], a[rows].sum(0))
    assert np.array_equal(got.top_value[:5], -np.sort(-a, axis=0)) and (got.top_offset[5:] == -1).all()
    masked = np.where(valid[None], block.astype(np.float32), -np.inf)  # [tokens, slots, sources]
    want = np.zeros((3, 3), np.int64)
    for slot in (0, 2):
        np.add.at(want[slot], masked[:, slot].argmax(-1), 1)
    assert np.array_equal(got.top_source, want)
    block[2, 2, 1] = np.nan
    with pytest.raises(NaNWeightError):
        summarize_alpha(plan, block, tokens, docs)
