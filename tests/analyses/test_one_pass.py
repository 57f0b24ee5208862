"""analyze's one pass over alpha: per-group routing sums from the chunk kernel (routing_groups.py), the
mixing matrix from the routing pass's mean weights, and the shared-draw bootstrap (bootstrap.py), each
against the straightforward computation (float64 per-token statistics summed per group; mean_weights;
scipy.stats.bootstrap with a lambda over resampled groups)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from depthscope.analyses import scanner
from depthscope.analyses.analysis import analyze
from depthscope.analyses.comparison import (
    GROUP_FEATURES, compare, compare_table, estimate, grouped_sums, statistics,
)
from depthscope.analyses.groups import group_index
from depthscope.analyses.mixing import mixing_from_run
from depthscope.analyses.routing import is_signed, routing_stats
from depthscope.analyses.routing_chunk import ChunkKernel
from depthscope.analyses.runs import MemoryRun, iter_chunks
from depthscope.analyses.sources import run_geometry

from test_routing import write_run
from test_routing_chunk import BLOCK, DENSE, FULL, HYPER, token_reference, weights

torch.set_num_threads(1)


def plain_group_sums(run, unit: str, block_tokens: int = 256, chunk_tokens: int | None = None):
    """The straightforward per-group routing sums [groups, features * slots] and group numbers: per-token
    statistics in float64 (token_reference), NaN as 0, summed per group; groups numbered as a chunked pass
    meets them (first chunk, then id within it)."""
    geo = run_geometry(run)
    index: dict[int, int] = {}
    rows, values = [], []
    names = ["document", "alpha"] if unit == "documents" else ["alpha"]
    for chunk in iter_chunks(run, names, chunk_tokens):
        stats = token_reference(np.asarray(chunk["alpha"]), geo, None, is_signed(run))
        feats = [np.nan_to_num(stats[f].astype(np.float64), nan=0.0) for f in GROUP_FEATURES[:-1]]
        feats.append((~np.isnan(stats["norm_entropy"])).astype(np.float64))
        values.append(np.concatenate(feats, 1))  # [T, features * slots]
        ids = (np.asarray(chunk["document"]) if unit == "documents" else
               np.arange(chunk.start, chunk.stop) // (block_tokens if unit == "blocks" else 1))
        for g in np.unique(ids).tolist():
            index.setdefault(g, len(index))
        rows.append(np.array([index[g] for g in ids.tolist()]))
    out = np.zeros((len(index), values[0].shape[1]))
    np.add.at(out, np.concatenate(rows), np.concatenate(values))
    return out


def routing_block(sums) -> np.ndarray:
    n = len(sums.labels)
    start = sums.col(f"{GROUP_FEATURES[0]}@{sums.labels[0]}")
    return sums.features[:, start: start + len(GROUP_FEATURES) * n]


@pytest.mark.parametrize("labels, kind, signed", [(FULL, "full_attnres", False), (BLOCK, "block_attnres", False),
                                                  (DENSE, "denseformer", True), (HYPER, "hyper", True)])
@pytest.mark.parametrize("unit", ["documents", "blocks", "tokens"])
def test_group_sums_of_the_routing_pass_match_per_token_sums(labels, kind, signed, unit):
    alpha = weights(labels, 300, seed=3, signed=signed, dtype=np.float32)
    # documents out of order and interleaved, so chunks hold several groups and meet them unsorted
    document = np.random.default_rng(0).integers(0, 25, 300)[np.arange(300) // 3]
    run = MemoryRun(alpha=alpha, source_labels=labels, kind=kind, document=document)
    groups = group_index(run, unit, block_tokens=20, chunk_tokens=64)
    routing = routing_stats(run, chunk_tokens=64, groups=groups)
    expect = plain_group_sums(run, unit, 20, 64)
    got = routing.group_sums.reshape(groups.n_groups, -1)  # [groups, features * slots]
    assert got.shape == expect.shape and np.allclose(got, expect, rtol=1e-5, atol=1e-4)
    reused = grouped_sums(run, unit, block_tokens=20, chunk_tokens=64, routing=routing)
    alone = grouped_sums(run, unit, block_tokens=20, chunk_tokens=64)
    assert np.array_equal(routing_block(reused), routing_block(alone))
    assert np.allclose(routing_block(alone), expect, rtol=1e-5, atol=1e-4)
    assert reused.names == alone.names and reused.unit == unit


@pytest.mark.parametrize("block_tokens", [8, 1024])
def test_kernel_blocks_within_one_group_and_across_groups(block_tokens):
    # contiguous documents of 16 tokens: blocks of 8 lie in one group, blocks of 1024 span many
    alpha = weights(FULL, 200, seed=4, dtype=np.float16)
    run = MemoryRun(alpha=alpha, source_labels=FULL, kind="full_attnres", document=np.arange(200) // 16)
    kernel = ChunkKernel(run_geometry(run), block_tokens=block_tokens)
    ids, part = kernel.sums(alpha, 0, groups=np.arange(200) // 16).groups
    assert np.array_equal(ids, np.arange(13))
    expect = plain_group_sums(run, "documents", chunk_tokens=200)
    assert np.allclose(part.reshape(13, -1), expect, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("workers", [1, 2])
def test_stored_run_one_pass_matches(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(scanner, "default_workers", lambda: workers)
    alpha = weights(FULL, 100, seed=5)
    path = write_run(tmp_path / "run", alpha.astype(np.float32), chunk=16, document=np.arange(100) // 4)
    from depthscope.probe import open_run

    run = open_run(path)
    routing = routing_stats(run, groups=group_index(run))
    sums = grouped_sums(run, routing=routing)
    assert sums.unit == "documents" and sums.n_groups == 25
    assert np.allclose(routing_block(sums), plain_group_sums(run, "documents"), rtol=1e-5, atol=1e-4)
    assert np.allclose(mixing_from_run(run, weights=routing.mean_alpha).matrix, mixing_from_run(run).matrix,
                       atol=1e-6, equal_nan=True)


def test_group_numbering_follows_the_chunked_pass():
    document = np.array([5, 5, 3, 3, 9, 1, 1, 5, 7, 7])
    run = MemoryRun(input_rms=np.ones((10, 1)), source_labels=[[]], document=document)
    g = group_index(run, "documents", chunk_tokens=4)
    # chunk 1 holds 5, 3 -> 3 first (sorted); chunk 2: 9, 1 (and 5, seen) -> 1, 9; chunk 3: 7
    assert g.n_groups == 5 and g.ids.tolist() == [1, 1, 0, 0, 3, 2, 2, 1, 4, 4]
    assert group_index(run, "auto").unit == "blocks"  # fewer than 20 documents
    assert group_index(run, "tokens").ids.tolist() == list(range(10))


def plain_estimate(sums, name, n_resamples, seed=0):
    from scipy.stats import bootstrap

    f, x = statistics(sums)[name], sums.features
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap((np.arange(sums.n_groups),), lambda i, axis=-1: f(x[i].sum(-2)), vectorized=True,
                        n_resamples=n_resamples, method="percentile", random_state=np.random.default_rng(seed))
    return res.confidence_interval


def plain_compare(a, b, name, n_resamples, batch, seed=0):
    from scipy.stats import bootstrap

    fa, fb = statistics(a)[name], statistics(b)[name]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap((np.arange(a.n_groups), np.arange(b.n_groups)),
                        lambda i, j, axis=-1: fa(a.features[i].sum(-2)) - fb(b.features[j].sum(-2)),
                        vectorized=True, paired=False, n_resamples=n_resamples, method="percentile", batch=batch,
                        random_state=np.random.default_rng(seed))
    return res.confidence_interval


def test_shared_bootstrap_draws_match_scipy_per_statistic(monkeypatch):
    rng = np.random.default_rng(6)
    runs = []
    for seed, n in ((7, 400), (8, 260)):
        alpha = weights(FULL, n, seed=seed, dtype=np.float32)
        runs.append(MemoryRun(alpha=alpha, source_labels=FULL, kind="full_attnres", document=np.arange(n) // 10,
                              input_rms=rng.random((n, len(FULL))) + 0.5, loss=rng.random(n)))
    a, b = (grouped_sums(r) for r in runs)
    names = ["locality", "norm_entropy_mlp", "jump_rate", "input_rms_log_slope", "loss", "embedding@attn2"]
    for name in names:
        got = estimate(a, name, n_resamples=300, seed=2)
        ci = plain_estimate(a, name, 300, seed=2)
        assert np.allclose([got["ci_low"], got["ci_high"]], [ci.low, ci.high], rtol=1e-9, atol=1e-12), name
    # two runs are drawn together in batches: a small batch makes the order of the draws matter
    from depthscope.analyses import comparison as cmp

    monkeypatch.setattr(cmp, "_batch", lambda sums: 37)
    table = compare_table(a, b, names, n_resamples=200)
    for row in table.itertuples():
        ci = plain_compare(a, b, row.statistic, 200, 37)
        assert np.allclose([row.ci_low, row.ci_high], [ci.low, ci.high], rtol=1e-9, atol=1e-12), row.statistic
    again = compare(a, b, "locality", n_resamples=200)  # from the cached draws
    assert again["ci_low"] == table.set_index("statistic").loc["locality", "ci_low"]


def test_analyze_reads_alpha_once_and_agrees_with_separate_passes(monkeypatch):
    alpha = weights(FULL, 400, seed=9, dtype=np.float32)
    run = MemoryRun(alpha=alpha, source_labels=FULL, kind="full_attnres", document=np.arange(400) // 10,
                    input_rms=np.random.default_rng(1).random((400, len(FULL))) + 0.5)
    from depthscope.analyses import mixing

    def no_second_pass(*args, **kw):
        raise AssertionError("alpha read again for the mixing matrix")

    monkeypatch.setattr(mixing, "mean_weights", no_second_pass)
    result = analyze(run, causal=False, n_resamples=200)
    monkeypatch.undo()
    expect = mixing_from_run(run)
    assert np.allclose(result.tables["mixing"]["weight"], expect.frame()["weight"], atol=1e-6)
    sums = grouped_sums(run)
    assert np.allclose(result.sums.features, sums.features, rtol=1e-12, atol=1e-12)
    est = result.tables["estimates"].set_index("statistic")
    ci = plain_estimate(sums, "locality", 200)
    assert np.allclose([est.loc["locality", "ci_low"], est.loc["locality", "ci_high"]], [ci.low, ci.high])
