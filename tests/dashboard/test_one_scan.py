"""The dashboard's background pass is one scan of the run: the serving index, the RMS moments and analyses'
routing statistics come from one decode of each chunk, and they equal what depthscope.analyses computes on its
own (routing_stats, the per-token kernel, the log-histogram percentiles)."""
from __future__ import annotations

import numpy as np
import pytest

from depthscope.analyses import DASHBOARD_BINS, Moments, routing_kernel, routing_stats
from depthscope.dashboard import views
from depthscope.dashboard.data import TOKEN_STATS, RunData
from depthscope.dashboard.runs import Catalogue
from depthscope.probe import open_run


@pytest.mark.parametrize("name", ["full", "block"])
def test_one_decode_per_chunk_serves_the_index_and_the_statistics(catalogue, name, monkeypatch):
    run = open_run(catalogue.resolve(name))
    decoded = []
    original = run.alpha.read_block

    def counted(number, *args, **kwargs):
        decoded.append(number)
        return original(number, *args, **kwargs)

    monkeypatch.setattr(run.alpha, "read_block", counted)
    data = RunData(run).build()
    assert data.error is None
    chunks = len(run.alpha.blocks())
    assert sorted(decoded) == sorted([0] + list(range(chunks)))  # the first chunk once more: the histogram range
    alone = routing_stats(catalogue.resolve(name))
    scanned = data.routing_stats()
    for table in ("sublayers", "sources", "jumps", "by_kind"):
        assert getattr(scanned, table).equals(getattr(alone, table)), table


def test_statistics_pages_use_the_scans_routing(runs_dir):
    cat = Catalogue(runs_dir, background=False)
    data = cat.ready_data("block")
    assert views.routing_stats(cat, {"run": "block"}) is data.routing_stats()  # no second read of the run
    other = views.routing_stats(cat, {"run": "block", "k": "1"})  # another window: computed apart
    assert other.k == 1.0 and not other.sublayers.equals(data.routing_stats().sublayers)


def test_rms_bands_are_analyses_percentiles(catalogue):
    data = catalogue.data("full")
    x = open_run(catalogue.resolve("full")).input_rms[:]
    expect = Moments.of(x, DASHBOARD_BINS)
    prof = data.rms_profile("input_rms")
    for p in (5, 50, 95):
        assert np.array_equal(prof[f"p{p}"].to_numpy(), expect.percentile(p), equal_nan=True)
    assert np.allclose(prof["mean"], expect.mean, equal_nan=True)


def test_token_views_come_from_the_routing_kernel(catalogue):
    data = catalogue.data("block")
    run = open_run(catalogue.resolve("block"))
    stats = routing_kernel(run).token_stats(run.alpha.read(10, 60), 10)
    for name in TOKEN_STATS:
        values, _, index = data.stat_matrix(10, 60, name)
        assert np.array_equal(values, stats[name], equal_nan=True) and index.tolist() == list(range(10, 60))
