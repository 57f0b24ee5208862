"""The runs catalogue (safe ids, errors per run, caching) and the serving aggregates against plain numpy."""
from __future__ import annotations

import numpy as np
import pytest

from depthscope.dashboard import data as D
from depthscope.dashboard.runs import Catalogue, NotFound
from depthscope.probe import RunError, open_run


def test_lists_every_run_and_broken_ones_with_their_error(catalogue):
    infos = {i.id: i for i in catalogue.list()}
    assert {"full", "block", "residual", "train/step0", "train/step100", "broken", "halfway"} <= set(infos)
    assert "escape" not in infos  # a symlink is not followed
    assert infos["broken"].error and "manifest.json" in infos["broken"].error and infos["broken"].status == "error"
    assert infos["halfway"].status == "incomplete" and infos["halfway"].ok
    assert infos["full"].tokens == 512 and infos["full"].kind == "full_attnres"
    assert list(catalogue.trainings()) == ["/ckpt/train"]
    assert [i.step for i in catalogue.trainings()["/ckpt/train"]] == [0, 100]


@pytest.mark.parametrize("bad", ["../outside", "..", "full/../block", "/etc", "escape", "full/shard-00000",
                                 "nope", "", "a\x00b", "full/../../x", "./full", "full//x"])
def test_bad_ids_are_not_found(catalogue, bad):
    with pytest.raises(NotFound):
        catalogue.resolve(bad)


def test_broken_run_raises_run_error(catalogue):
    with pytest.raises(RunError):
        catalogue.open("broken")


def test_routing_matches_numpy_for_every_filter(catalogue):
    d = catalogue.data("full")
    run = open_run(catalogue.resolve("full"))
    alpha = run.alpha[:].astype(np.float64)  # [tokens, slots, sources]
    tok, doc = run.token[:], run.document[:]
    cases = [(D.Filter(), np.ones(len(tok), bool)),
             (D.Filter(start=37, stop=300), (np.arange(len(tok)) >= 37) & (np.arange(len(tok)) < 300)),
             (D.Filter(document=2), doc == 2),
             (D.Filter(regex="[aeiou]"), np.isin(tok, [ord(c) for c in "aeiou"])),
             (D.Filter(document=1, regex="o", start=100), (doc == 1) & (tok == ord("o")) & (np.arange(len(tok)) >= 100))]
    for flt, mask in cases:
        res = d.routing(flt)
        expected = np.nanmean(alpha[mask], axis=0)
        f = res.frame
        assert res.tokens == mask.sum()
        assert np.allclose(f["mean"], expected[f["slot"], f["source_index"]], atol=1e-6), flt


def test_large_selection_is_sampled_and_says_so(catalogue, monkeypatch):
    monkeypatch.setattr(D, "READ_BUDGET", 128)
    res = catalogue.data("full").routing(D.Filter(start=1, stop=500, regex="e"))
    assert res.sampled and "sampled" in res.note


def test_bad_filters_say_what_is_wrong(catalogue):
    d = catalogue.data("full")
    with pytest.raises(D.FilterError, match="regular expression"):
        d.routing(D.Filter(regex="(("))
    with pytest.raises(D.FilterError, match="no document"):
        d.routing(D.Filter(document=99))


def test_cell_distribution_and_top_tokens(catalogue):
    d = catalogue.data("full")
    alpha = open_run(catalogue.resolve("full")).alpha[:].astype(np.float64)
    res = d.cell(4, 1)  # final <- attn1
    assert res.counts.sum() == 512
    assert np.isclose(res.top["weight"].iloc[0], alpha[:, 4, 1].max(), atol=1e-3)
    assert res.top["index"].iloc[0] in np.nonzero(np.isclose(alpha[:, 4, 1], alpha[:, 4, 1].max(), atol=1e-3))[0]
    filtered = d.cell(4, 1, D.Filter(start=0, stop=100))
    assert filtered.counts.sum() == 100


def test_rms_percentiles_are_close_to_numpy(catalogue):
    d = catalogue.data("full")
    x = open_run(catalogue.resolve("full")).input_rms[:]
    prof = d.rms_profile("input_rms")
    assert np.allclose(prof["p50"], np.median(x, axis=0), rtol=0.03, equal_nan=True)
    assert np.allclose(prof["mean"], np.nanmean(x, 0), rtol=1e-5, equal_nan=True)


def test_token_window_uses_the_analyses_kernel(catalogue):
    d = catalogue.data("block")
    frame = d.token_window(0, 50, 3)
    assert {"embedding", "norm_entropy", "long_range", "char"} <= set(frame)
    alpha = open_run(catalogue.resolve("block")).alpha[0:50, 3].astype(np.float64)
    assert np.allclose(frame["embedding"], alpha[:, 0], atol=1e-3)


def test_runs_are_reopened_when_they_change(runs_dir, tmp_path):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(runs_dir / "full", root / "x")
    cat = Catalogue(root, background=False)
    first = cat.open("x")
    assert cat.open("x") is first
    manifest = root / "x" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"corpus": "test-text"', '"corpus": "changed"'))
    assert cat.open("x") is not first and cat.open("x").manifest["corpus"] == "changed"
