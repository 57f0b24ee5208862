"""Running summaries: equal to statistics computed from the captured arrays; mergeable; all-reduced over gloo;
and capture-mode shards written by two ranks read back as one run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from depthscope.probe import Probe, RunWriter, Summary, open_run
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

torch.set_num_threads(1)


def tiny(seed=0):
    return tiny_model("block_attnres", seed, query_scale=2.0)


def batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (2, 8), generator=g) for _ in range(n)]


def run_probe(model, xs, **kw):
    with Probe(model, summary=True, memory=True, grads=True, dtype=torch.float32, **kw) as probe:
        for step, x in enumerate(xs):
            model.zero_grad()
            logits = model(x)
            F.cross_entropy(logits.flatten(0, 1), x.flatten()).backward()
            probe.commit(targets=x, step=step)
    return probe


def assert_frames_equal(a: dict, b: dict, rtol=1e-9):
    assert a.keys() == b.keys()
    for name in a:
        left, right = a[name].reset_index(drop=True), b[name].reset_index(drop=True)
        assert list(left.columns) == list(right.columns), name
        for column in left.columns:
            if left[column].dtype.kind in "fc":
                np.testing.assert_allclose(left[column], right[column], rtol=rtol, atol=1e-12, err_msg=f"{name}.{column}")
            else:
                assert left[column].tolist() == right[column].tolist(), f"{name}.{column}"


def test_summary_equals_statistics_of_the_captured_tokens():
    model, xs = tiny(), batches()
    probe = run_probe(model, xs)
    arrays = probe.arrays()
    frames = probe.summary.to_frames()
    alpha = arrays["alpha"].astype(np.float64)  # [tokens, sublayers, sources]
    a = frames["alpha"]
    for row in a.itertuples():
        values = alpha[:, probe.layout.slot(row.sublayer), row.source_index]
        assert row.count == len(values)
        assert row.mean == pytest.approx(values.mean(), rel=1e-9)
        assert row.var == pytest.approx(values.var(), rel=1e-7, abs=1e-15)
        assert row.max == pytest.approx(values.max())
    top = np.nan_to_num(alpha, nan=-np.inf).argmax(-1)  # [tokens, sublayers]
    n_sources = probe.layout.n_sources
    jump = frames["jump"]
    for slot, sublayer in enumerate(probe.layout.sublayers):
        distances = n_sources[slot] - top[:, slot]
        got = jump[jump.sublayer == sublayer].set_index("distance")["count"]
        for d in range(1, n_sources[slot] + 1):
            assert got[d] == int((distances == d).sum())
    assert frames["top_source"]["count"].sum() == len(alpha) * len(probe.layout.sublayers)
    norms = frames["norms"]
    rms = arrays["output_rms"].astype(np.float64)
    out = norms[norms.quantity == "output_rms"].reset_index(drop=True)
    np.testing.assert_allclose(out["mean"][:4], rms[:, :4].mean(0), rtol=1e-9)
    np.testing.assert_allclose(out["var"][:4], rms[:, :4].var(0), rtol=1e-6)
    assert out["count"].tolist() == [len(rms)] * 4 + [0]  # no sublayer output at the final mixer
    grads = np.stack([r.grad_norms.numpy() for r in probe.records]).astype(np.float64)
    np.testing.assert_allclose(frames["grad_norms"]["mean"][:4], grads[:, :4].mean(0), rtol=1e-6)
    assert frames["loss"]["mean"][0] == pytest.approx(arrays["loss"].astype(np.float64).mean(), rel=1e-6)
    assert frames["info"]["tokens"][0] == 6 * 16


def test_merge_of_parts_equals_the_whole_and_save_load_round_trip(tmp_path):
    model, xs = tiny(), batches()
    whole = run_probe(model, xs).summary
    first, second = run_probe(model, xs[:2]).summary, run_probe(model, xs[2:]).summary
    merged = Summary().merge(first).merge(second)
    assert_frames_equal(merged.to_frames(), whole.to_frames())
    whole.save(tmp_path / "s")
    assert_frames_equal(Summary.load(tmp_path / "s").to_frames(), whole.to_frames())
    doubled = Summary.load(tmp_path / "s").merge(Summary.load(tmp_path / "s")).to_frames()
    single = whole.to_frames()
    assert (doubled["alpha"]["count"] == 2 * single["alpha"]["count"]).all()
    np.testing.assert_allclose(doubled["alpha"]["mean"], single["alpha"]["mean"], rtol=1e-12)
    np.testing.assert_allclose(doubled["alpha"]["var"], single["alpha"]["var"], rtol=1e-9, atol=1e-15)


def test_summary_is_saved_into_a_run(tmp_path):
    model, xs = tiny(), batches(3)
    with Probe(model, out=RunWriter(tmp_path / "run", arrays=False), summary=True) as probe:
        for x in xs:
            model(x)
    run = open_run(tmp_path / "run")
    assert run.complete and run.mode == "summary" and run.captured == ()
    assert run.summary["info"]["tokens"][0] == 48
    assert_frames_equal(run.summary, probe.summary.to_frames())


# ------------------------------------------------------------------------------------------------ distributed


def _worker(rank: int, world: int, init: str, run_dir: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model, xs = tiny(), batches()
        mine = xs[rank::world]
        probe = run_probe(model, mine)
        probe.summary.all_reduce()
        if rank == 0:
            probe.summary.save(out)
        # each rank writes its own shard; the writer all-reduces the summary at close and rank 0 saves it
        with Probe(model, out=run_dir, chunk_tokens=16, summary=True, memory=False) as capture:
            with torch.no_grad():
                for x in mine:
                    model(x)
        assert capture.writer.rank == rank
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_gloo_equals_one_process_and_shards_read_as_one_run(tmp_path):
    world = 2
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker, args=(world, init, str(tmp_path / "run"), str(tmp_path / "summary")), nprocs=world,
             join=True)
    model, xs = tiny(), batches()
    single = run_probe(model, xs[0::2] + xs[1::2]).summary
    reduced = Summary.load(tmp_path / "summary")
    assert_frames_equal(reduced.to_frames(), single.to_frames(), rtol=1e-6)

    run = open_run(tmp_path / "run")
    assert run.complete and run.manifest["world_size"] == 2 and run.shard_tokens == [48, 48]
    with Probe(model) as memory:
        with torch.no_grad():
            for x in xs[0::2] + xs[1::2]:  # rank 0's tokens, then rank 1's
                model(x)
    expected = memory.arrays()
    for name in ("alpha", "token", "input_rms"):
        np.testing.assert_array_equal(run.arrays[name][:], expected[name], err_msg=name)
    chunks = list(run.iter_chunks(["token"], chunk_tokens=40))
    assert sum(len(c) for c in chunks) == 96
    with Probe(model, summary=True, dtype=torch.float16) as one:
        with torch.no_grad():
            for x in xs[0::2] + xs[1::2]:
                model(x)
    assert_frames_equal(run.summary, one.summary.to_frames(), rtol=1e-6)
    assert run.summary["info"]["tokens"][0] == 96
