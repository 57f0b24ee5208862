"""The one-pass chunk kernel behind routing_stats (routing_chunk.py) and its parallel stored-chunk road
(scanner.py, probe LazyArray.read_block) against a plain float64 numpy computation of the definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthscope.analyses import AnalysisError
from depthscope.analyses import scanner
from depthscope.analyses.routing import routing_stats
from depthscope.analyses.runs import MemoryRun
from depthscope.analyses.sources import geometry
from depthscope.models.vocabulary import sublayer_label
from depthscope.probe import RunError, open_run

from test_routing import write_run

torch.set_num_threads(1)
L = 8
FULL = [[sublayer_label(i) for i in range(l)] for l in range(1, L + 1)]  # sublayer l sees l sources
BLOCK = [["emb"], ["emb", "partial"], ["emb", "block1"], ["emb", "block1", "partial"], ["emb", "block1", "block2"],
         ["emb", "block1", "block2", "block3"]]
DENSE = [["emb"], [], ["emb", "layer1"], [], ["emb", "layer1", "layer2"]]  # no weights before the MLPs
HYPER = [["stream1", "stream2", "stream3"]] * 3


def weights(labels, tokens: int, seed: int, signed: bool = False, dtype=np.float16) -> np.ndarray:
    """[tokens, n, S] with NaN beyond each row's sources; softmax-like rows with exact zeros and ties."""
    rng = np.random.default_rng(seed)
    n, s = len(labels), max(len(x) for x in labels)
    a = np.full((tokens, n, s), np.nan, dtype=np.float64)
    for i, row in enumerate(labels):
        if not row:
            continue
        w = rng.dirichlet(np.full(len(row), 0.4), size=tokens)
        if len(row) > 1:
            w[rng.random(tokens) < 0.1, 0] = 0.0  # exact zeros
        tie = rng.random(tokens) < 0.2  # ties for the top: the most recent against an older source, or two older
        w[tie, -1] = w[tie].max(1)
        if len(row) > 2:
            tie2 = rng.random(tokens) < 0.2
            w[tie2, 1] = w[tie2, 0] = w[tie2].max(1) + 0.5
        if signed:
            w *= rng.choice([-1.0, 1.0], size=w.shape)
        a[:, i, : len(row)] = w
    return a.astype(dtype)


def token_reference(alpha: np.ndarray, geo, k: float | None, signed: bool) -> dict[str, np.ndarray]:
    """The per-token statistics of routing.py's docstring in float64: name -> [T, n] (NaN at positions without
    sources and where undefined); "top" [T, n] the top source's column (-1 without sources)."""
    k = geo.default_k() if k is None else k
    x = alpha.astype(np.float32).astype(np.float64)  # the kernel works on float32 values
    t, n, s = x.shape
    out = {name: np.full((t, n), np.nan) for name in ("locality", "long_range", "embedding", "entropy",
                                                      "norm_entropy", "eff_sources", "top_distance")}
    out["top"] = np.full((t, n), -1)
    out["jump"] = np.zeros((t, n), dtype=bool)
    out["top_embedding"] = np.zeros((t, n), dtype=bool)
    for i in np.nonzero(geo.routed)[0]:
        m = geo.n_sources[i]
        a = np.abs(x[:, i, :m]) if signed else x[:, i, :m]
        p = a / a.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
        out["entropy"][:, i], out["eff_sources"][:, i] = h, np.exp(h)
        out["norm_entropy"][:, i] = h / math.log(m) if m > 1 else np.nan
        out["embedding"][:, i] = (p * geo.is_embedding[i, :m]).sum(1)
        best = a.max(1, keepdims=True)
        top = np.where(a[:, -1] == best[:, 0], m - 1, (a == best).argmax(1))  # the most recent, else the oldest
        out["top"][:, i] = top
        out["top_embedding"][:, i] = geo.is_embedding[i, top]
        if geo.has_distance:
            out["locality"][:, i] = (p * geo.nearest[i, :m]).sum(1)
            out["long_range"][:, i] = (p * geo.long_range(k)[i, :m]).sum(1)
            out["jump"][:, i] = geo.long_range(k)[i, top]
            out["top_distance"][:, i] = np.where(geo.is_embedding[i, top], np.nan, geo.distance[i, top])
    return out


def reference(alpha: np.ndarray, labels, k: float | None, signed: bool) -> dict[str, np.ndarray]:
    """The statistics of routing.py's docstring from the per-token reference (one row per position with
    sources): per sublayer [n] and per (sublayer, source) [n, S] means."""
    geo = geometry(labels, list(range(1, len(labels) + 1)), [f"s{i}" for i in range(len(labels))],
                   alpha.shape[2])
    tok = token_reference(alpha, geo, k, signed)
    x = alpha.astype(np.float32).astype(np.float64)
    t, n, s = x.shape
    out = {name: np.full(n, np.nan) for name in ("locality", "long_range", "embedding", "entropy", "norm_entropy",
                                                 "eff_sources", "jump_rate", "top_embedding_rate")}
    out.update({name: np.zeros((n, s)) for name in ("mean_alpha", "mean_share", "std_share", "top_rate")})
    for i in np.nonzero(geo.routed)[0]:
        m = geo.n_sources[i]
        raw = x[:, i, :m]
        a = np.abs(raw) if signed else raw
        p = a / a.sum(1, keepdims=True)
        for name in ("locality", "long_range", "embedding", "entropy", "norm_entropy", "eff_sources"):
            out[name][i] = tok[name][:, i].mean()
        out["top_embedding_rate"][i] = tok["top_embedding"][:, i].mean()
        if geo.has_distance:
            out["jump_rate"][i] = tok["jump"][:, i].mean()
        out["mean_alpha"][i, :m] = raw.mean(0)
        out["mean_share"][i, :m] = p.mean(0)
        out["std_share"][i, :m] = p.std(0)
        out["top_rate"][i, :m] = np.bincount(tok["top"][:, i], minlength=m) / t
    return out


def check(result, alpha, labels, k=None, signed=False, atol=2e-6):
    expect = reference(alpha, labels, k, signed)
    per = result.sublayers.set_index("sublayer")
    routed = [i for i, row in enumerate(labels) if row]
    for name in ("locality", "long_range", "embedding", "entropy", "norm_entropy", "eff_sources", "jump_rate",
                 "top_embedding_rate"):
        got = per.loc[[i + 1 for i in routed], name].to_numpy(dtype=float)
        assert np.allclose(got, expect[name][routed], atol=atol, equal_nan=True), name
    src = result.sources
    slot, col = src["sublayer"].to_numpy() - 1, src["source"].to_numpy()
    for name in ("mean_alpha", "mean_share", "std_share", "top_rate"):
        assert np.allclose(src[name].to_numpy(), expect[name][slot, col], atol=atol), name


@pytest.mark.parametrize("workers", [1, 2])
def test_stored_chunks_in_parallel_match_the_definitions(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(scanner, "default_workers", lambda: workers)
    alpha = weights(FULL, 100, seed=0)  # 6 full chunks of 16 tokens and a short one
    path = write_run(tmp_path / "run", alpha.astype(np.float32), chunk=16)
    fast = routing_stats(path)  # stored chunks, decoded straight from the files
    check(fast, alpha, FULL)
    other = routing_stats(path, chunk_tokens=7)  # the generic road: Run.iter_chunks, read ahead
    assert np.allclose(fast.sublayers.select_dtypes("number"), other.sublayers.select_dtypes("number"),
                       atol=1e-6, equal_nan=True)
    assert fast.jumps.equals(other.jumps)
    for k in (1, 2):
        check(routing_stats(path, k=k), alpha, FULL, k=k)


@pytest.mark.parametrize("labels, kind, signed", [(FULL, "full_attnres", False), (BLOCK, "block_attnres", False),
                                                  (DENSE, "denseformer", True), (HYPER, "hyper", True)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_memory_runs_of_every_geometry_match_the_definitions(labels, kind, signed, dtype):
    # float16 takes the 32-bit top-source keys, float32 the 64-bit ones; DenseFormer has rows without sources
    alpha = weights(labels, 300, seed=1, signed=signed, dtype=dtype)
    run = MemoryRun(alpha=alpha, source_labels=labels, kind=kind)
    check(routing_stats(run, chunk_tokens=128), alpha, labels, signed=signed)


def test_read_block_decodes_into_a_reused_buffer_and_agrees_with_zarr(tmp_path):
    alpha = weights(FULL, 40, seed=2)
    run = open_run(write_run(tmp_path / "run", alpha.astype(np.float32), chunk=16))
    array = run.arrays["alpha"]
    assert array.blocks() == [(0, 16), (16, 32), (32, 40)]
    out = np.empty((16, L, L), dtype=np.float16)
    for number, (a, b) in enumerate(array.blocks()):
        block = array.read_block(number, out=out)
        assert np.shares_memory(block, out) and np.array_equal(block, alpha[a:b], equal_nan=True)
    piece = array._pieces[0]
    assert piece.plain  # the store's codec chain: bytes + zstd
    piece.plain = False  # any other chain is read through Zarr
    assert np.array_equal(array.read_block(2), alpha[32:40], equal_nan=True)
    with pytest.raises(ValueError, match="C-contiguous"):
        array.read_block(0, out=np.empty((8, L, L), dtype=np.float16))


def test_faults_in_stored_chunks_name_the_chunk_file(tmp_path, monkeypatch):
    monkeypatch.setattr(scanner, "default_workers", lambda: 2)
    alpha = weights(FULL, 64, seed=3).astype(np.float32)
    alpha[37, 5, 2] = np.nan  # a valid source of sublayer 6, in the third chunk
    path = write_run(tmp_path / "nan", alpha, chunk=16)
    with pytest.raises(RunError, match="NaN depth-attention weight.*token 37 ") as err:
        routing_stats(path)
    assert err.value.path == path / "shard-00000/alpha/c/2/0/0"
    good = write_run(tmp_path / "good", weights(FULL, 64, seed=3).astype(np.float32), chunk=16)
    chunk = good / "shard-00000/alpha/c/1/0/0"
    chunk.write_bytes(chunk.read_bytes()[:-40])
    with pytest.raises(RunError, match="truncated or corrupt chunk"):
        routing_stats(good)


def test_infinite_weights_give_a_clear_error():
    alpha = weights(FULL, 10, seed=4).astype(np.float32)
    alpha[3, 4, 1] = np.inf
    with pytest.raises(AnalysisError, match=r"infinite depth-attention weight \(token 3, sublayer"):
        routing_stats(MemoryRun(alpha=alpha, source_labels=FULL, kind="full_attnres"))


def test_shards_read_as_one_run_on_the_stored_chunk_road(tmp_path, monkeypatch):
    from depthscope.probe import RunWriter
    from depthscope.probe.batch import BatchRecord
    from depthscope.probe.layout import Layout, default_label

    monkeypatch.setattr(scanner, "default_workers", lambda: 2)
    alpha = weights(FULL, 65, seed=5)
    label = default_label(L)
    layout = Layout(sublayers=list(range(1, L + 1)), sublayer_labels=[label(l) for l in range(1, L + 1)],
                    source_labels=FULL, quantities=["alpha"])
    parts = [(0, alpha[:40]), (1, alpha[40:])]  # shard 0: chunks of 16, 16, 8; shard 1: 16, 9
    for rank, part in reversed(parts):  # rank 0 (the manifest) last
        writer = RunWriter(tmp_path / "run", chunk_tokens=16, rank=rank, world_size=2,
                           meta={"model": {"kind": "full_attnres", "config": None}})
        writer.begin(layout, {})
        t = len(part)
        writer.write(BatchRecord(layout=layout, step=0, token=torch.zeros(1, t, dtype=torch.long),
                                 document=torch.zeros(1, t, dtype=torch.long), position=torch.arange(t).view(1, t),
                                 loss=torch.ones(1, t), alpha=torch.from_numpy(part).view(1, t, L, L)))
        writer.close(True)
    run = open_run(tmp_path / "run")
    assert run.shard_tokens == [40, 25] and run.arrays["alpha"].blocks()[2:4] == [(32, 40), (40, 56)]
    check(routing_stats(run), alpha, FULL)


@pytest.mark.parametrize("labels, kind, signed", [(FULL, "full_attnres", False), (BLOCK, "block_attnres", False),
                                                  (DENSE, "denseformer", True), (HYPER, "hyper", True)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_per_token_values_come_from_the_kernel_that_sums_them(labels, kind, signed, dtype):
    """The per-token tables (token_stats) against the float64 definitions, and summed over tokens they are the
    aggregate sums of the same kernel: one definition of each statistic."""
    from depthscope.analyses import routing_kernel
    from depthscope.models.vocabulary import TOKEN_STATISTICS

    alpha = weights(labels, 1500, seed=3, signed=signed, dtype=dtype)
    alpha[np.nansum(np.abs(alpha), -1) == 0] = 1  # float16 can round a row to all zeros: no shares there
    run = MemoryRun(alpha=alpha, source_labels=labels, kind=kind)
    kernel = routing_kernel(run)
    got = kernel.token_stats(alpha, 0)
    expect = token_reference(alpha, kernel.geo, None, signed)
    for name in (*TOKEN_STATISTICS, "top_distance"):
        assert np.allclose(got[name], expect[name], atol=2e-6, equal_nan=True), name
    for name in ("top", "jump", "top_embedding"):
        assert np.array_equal(got[name], expect[name]), name
    sums = kernel.sums(alpha)
    rows = kernel.geo.routed
    for i, name in enumerate(TOKEN_STATISTICS):
        column = got[name][:, rows]
        defined = ~np.isnan(column).all(0)
        assert np.allclose(sums.stats[i, rows][defined], column[:, defined].sum(0), rtol=1e-5), name
        assert np.array_equal(sums.counts[i, rows] > 0, defined), name
    top = np.zeros_like(sums.top)
    for i in np.nonzero(rows)[0]:
        top[i] = np.bincount(got["top"][:, i], minlength=top.shape[1])
    assert np.array_equal(sums.top, top)
    assert np.array_equal(sums.jump[rows], got["jump"][:, rows].sum(0))
