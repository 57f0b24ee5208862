"""The per-chunk cell index and the indexed / bounded cell and filter queries, against plain numpy on small runs."""
from __future__ import annotations

import numpy as np
import pytest

from depthscope.dashboard import data as D
from depthscope.dashboard import cell_index
from depthscope.dashboard.cell_index import CELL_BINS, TOP_K, bin_of, chunk_top
from depthscope.dashboard.token_match import match_table, matches
from depthscope.probe import open_run


def _truth(catalogue, name="full"):
    run = open_run(catalogue.resolve(name))
    alpha = run.alpha[:].astype(np.float32)  # [tokens, slots, sources]
    return run, alpha, run.token[:], run.document[:]


CASES = [
    ("all", D.Filter(), lambda n, tok, doc: np.ones(n, bool)),
    ("range inside chunks", D.Filter(start=37, stop=300), lambda n, tok, doc: (np.arange(n) >= 37) & (np.arange(n) < 300)),
    ("range on chunk edges", D.Filter(start=128, stop=384), lambda n, tok, doc: (np.arange(n) >= 128) & (np.arange(n) < 384)),
    ("regex", D.Filter(regex="[aeiou]"), lambda n, tok, doc: np.isin(tok, [ord(c) for c in "aeiou"])),
    ("document", D.Filter(document=2), lambda n, tok, doc: doc == 2),
    ("document + regex + start", D.Filter(document=1, regex="o", start=100),
     lambda n, tok, doc: (doc == 1) & (tok == ord("o")) & (np.arange(n) >= 100)),
    ("range + regex", D.Filter(start=50, stop=450, regex="e"),
     lambda n, tok, doc: (tok == ord("e")) & (np.arange(n) >= 50) & (np.arange(n) < 450)),
]


@pytest.mark.parametrize("label,flt,select", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("slot,source", [(4, 1), (3, 0), (2, 2)])
def test_indexed_cell_equals_the_straightforward_answer(catalogue, label, flt, select, slot, source):
    d = catalogue.data("full")
    d.clear_caches()
    run, alpha, tok, doc = _truth(catalogue)
    assert run.valid[slot, source], "the parametrised cells must be valid sources of the fixture run"
    mask = select(len(tok), tok, doc)
    values = alpha[mask, slot, source]
    res = d.cell(slot, source, flt)
    lo, hi = d.agg.cells.hist_range
    assert not res.sampled, res.note  # a 512-token run fits every read budget
    assert np.array_equal(res.counts, np.bincount(bin_of(values, lo, hi), minlength=CELL_BINS)), label
    assert res.tokens == mask.sum()
    expected = np.sort(values)[::-1][:TOP_K]
    assert np.allclose(res.top["weight"].to_numpy(), expected), label
    assert mask[res.top["index"].to_numpy()].all()  # every listed token passes the filter
    assert np.allclose(alpha[res.top["index"].to_numpy(), slot, source], res.top["weight"].to_numpy())


def test_a_range_reads_only_its_edge_chunks(catalogue):
    d = catalogue.data("full")
    d.clear_caches()
    before = d.chunks.reads
    d.cell(4, 1, D.Filter(start=1, stop=511))  # chunks 0 and 3 are edges, 1 and 2 come from the index
    assert d.chunks.reads - before == 2
    d.routing(D.Filter(start=1, stop=511))  # the heatmap of the same filter reuses them
    assert d.chunks.reads - before == 2


def test_range_sums_use_the_complement_of_a_mostly_covered_chunk(catalogue):
    d = catalogue.data("full")
    run, alpha, _, _ = _truth(catalogue)
    for start, stop in [(1, 511), (100, 130), (127, 129), (5, 6), (0, 512)]:
        res = d.routing(D.Filter(start=start, stop=stop))
        f = res.frame
        a = alpha[start:stop].astype(np.float64)
        assert np.allclose(f["mean"], a.mean(0)[f["slot"], f["source_index"]], atol=1e-6)
        assert np.allclose(f["std"], a.std(0)[f["slot"], f["source_index"]], atol=1e-5)


def test_unproven_top_tokens_are_said(catalogue, monkeypatch):
    monkeypatch.setattr(D, "READ_BUDGET", 0)  # no read: the text filter's top tokens come from the lists only
    d = catalogue.data("full")
    d.clear_caches()
    run, alpha, tok, _ = _truth(catalogue)
    res = d.cell(4, 1, D.Filter(regex="[xyz]"))
    values = alpha[np.isin(tok, [ord(c) for c in "xyz"]), 4, 1]
    assert res.counts.sum() == len(values)  # the distribution is exact from the per-token-id histograms
    if res.sampled:
        assert "top tokens" in res.note and "larger ones may exist" in res.note
    else:
        assert np.allclose(res.top["weight"], np.sort(values)[::-1][:TOP_K])


@pytest.mark.parametrize("heavy", [1024, 4])  # 4: every column takes the partition path for ties
def test_chunk_top_matches_a_full_sort(monkeypatch, heavy):
    monkeypatch.setattr(cell_index, "_HEAVY", heavy)
    rng = np.random.default_rng(1)
    af = rng.random((300, 7), dtype=np.float32) ** 3
    af[:, 5] = 0.5  # one cell of ties
    af[:, 6] = 0.0  # an invalid cell
    valid = np.array([True] * 6 + [False])
    for rows in (300, 5):  # more tokens than the sample, and fewer than k
        value, offset = chunk_top(af[:rows], TOP_K, valid)
        expected = -np.sort(-af[:rows, :6], axis=0)[:TOP_K]
        assert np.allclose(value[: len(expected), :6], expected)
        assert np.allclose(np.take_along_axis(af[:rows, :6], offset[: len(expected), :6].astype(np.int64), 0), expected)
        assert (offset[:, 6] == -1).all() and (offset[len(expected):] == -1).all()


def test_token_match_table_and_mask():
    from depthscope.models.vocabulary import token_label as labels  # a byte-level run's labels
    table = match_table("[a-c]", 256, labels)
    assert table[ord("a")] and table[ord("c")] and not table[ord("d")]
    tokens = np.array([97, 100, 98, -1, 99])
    assert matches(tokens, "[a-c]", labels).tolist() == [True, False, True, False, True]
    with pytest.raises(D.FilterError, match="regular expression"):
        D.RunData._compile("((")
