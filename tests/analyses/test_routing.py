"""Routing statistics on hand-worked weight tensors written as real runs (probe RunWriter), and their errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthscope.analyses import AnalysisError
from depthscope.analyses.per_token import token_table, token_weights
from depthscope.analyses.routing import routing_stats
from depthscope.analyses.runs import MemoryRun
from depthscope.analyses.sources import geometry
from depthscope.models.vocabulary import sublayer_label
from depthscope.probe import RunError, RunWriter
from depthscope.probe.batch import BatchRecord
from depthscope.probe.layout import Layout, default_label

torch.set_num_threads(1)
L = 8  # sublayers 1..8, Full-AttnRes labels: sublayer l sees emb, attn1, ... (l sources)
LABELS = [[sublayer_label(i) for i in range(l)] for l in range(1, L + 1)]


def full_alpha(tokens: int, fill) -> np.ndarray:
    """[tokens, L, L] with NaN beyond each row's sources; fill(l, n_sources) -> weights of row l (1-based)."""
    a = np.full((tokens, L, L), np.nan, dtype=np.float32)
    for l in range(1, L + 1):
        a[:, l - 1, :l] = fill(l, l)
    return a


def write_run(path, alpha, labels=LABELS, kind="full_attnres", chunk=16, **extra):
    """A real run on disk through the probe's own writer."""
    t, n, s = alpha.shape
    sublayers = list(range(1, n + 1))
    label = default_label(n)
    quantities = ["alpha"] + [q for q in ("input_rms", "output_rms", "residual_rms", "grad_rms") if q in extra]
    layout = Layout(sublayers=sublayers, sublayer_labels=[label(l) for l in sublayers],
                    source_labels=[list(x) for x in labels], quantities=quantities)
    writer = RunWriter(path, chunk_tokens=chunk, meta={"model": {"kind": kind, "config": None}})
    writer.begin(layout, {})
    doc = extra.get("document", np.arange(t) // 4)
    rec = BatchRecord(layout=layout, step=0, token=torch.full((1, t), 65), document=torch.as_tensor(doc).view(1, t),
                      position=torch.arange(t).view(1, t), loss=torch.ones(1, t),
                      alpha=torch.from_numpy(alpha).to(torch.float16).view(1, t, n, s),
                      **{q: torch.as_tensor(extra[q], dtype=torch.float32).view(1, t, n) for q in quantities[1:]})
    writer.write(rec)
    writer.close(True)
    return path


def predecessor(l, n):
    w = np.zeros(n)
    w[-1] = 1.0
    return w


def test_all_weight_on_the_predecessor(tmp_path):
    r = routing_stats(write_run(tmp_path / "run", full_alpha(40, predecessor)), k=2)
    s = r.sublayers.set_index("sublayer_label")
    assert np.allclose(s["locality"], 1.0) and np.allclose(s["entropy"], 0.0, atol=1e-6)
    assert np.allclose(s["norm_entropy"].iloc[1:], 0.0, atol=1e-6) and math.isnan(s.loc["attn1", "norm_entropy"])
    assert np.allclose(s["eff_sources"], 1.0, atol=1e-5)
    assert np.allclose(s["long_range"], 0.0) and np.allclose(s["jump_rate"], 0.0)
    # the only source of sublayer 1 is the embedding: its nearest source and its reach-back
    assert s.loc["attn1", "embedding"] == 1.0 and s.loc["attn1", "top_embedding_rate"] == 1.0
    assert np.allclose(s["embedding"].iloc[1:], 0.0)
    assert list(s["usual_source"]) == [row[-1] for row in LABELS] and np.allclose(s["off_usual_rate"], 0)
    assert (r.jumps["distance"] == 1).all() and (r.jumps["share"] == 1).all() and not r.jumps["is_jump"].any()
    assert set(r.by_kind["kind"]) == {"attn", "mlp", "all"}


def test_uniform_weights_have_normalised_entropy_one(tmp_path):
    r = routing_stats(write_run(tmp_path / "run", full_alpha(24, lambda l, n: np.full(n, 1.0 / n))))
    s = r.sublayers
    assert np.allclose(s["norm_entropy"].iloc[1:], 1.0, atol=2e-3)
    assert np.allclose(s["eff_sources"], s["n_sources"], rtol=3e-3)
    assert np.allclose(s["locality"], 1.0 / s["n_sources"], atol=1e-3)
    assert np.allclose(s["embedding"], 1.0 / s["n_sources"], atol=1e-3)
    # k = 4: the non-embedding sources more than 4 back of sublayer l are attn1 .. sublayer l-5
    expect = np.maximum(s["n_sources"] - 5, 0) / s["n_sources"]
    assert np.allclose(s["long_range"], expect, atol=2e-3)
    # ties go to the most recent source: no jumps, no embedding reach-back beyond sublayer 1
    assert np.allclose(s["jump_rate"], 0) and np.allclose(s["top_embedding_rate"].iloc[1:], 0)
    assert not r.sources["is_sink"].any()  # uniform shares never make a sink


def test_a_known_jump_pattern(tmp_path):
    # sublayer 8 (mlp4): even tokens put 0.7 on attn1 (7 back), odd tokens 0.6 on emb; the rest on the predecessor
    t = 20
    a = full_alpha(t, predecessor)
    a[:, 7, :8] = 0.0
    a[0::2, 7, 1], a[0::2, 7, 7] = 0.7, 0.3
    a[1::2, 7, 0], a[1::2, 7, 7] = 0.6, 0.4
    r = routing_stats(write_run(tmp_path / "run", a), k=4)
    row = r.sublayers.set_index("sublayer_label").loc["mlp4"]
    assert row["jump_rate"] == pytest.approx(0.5) and row["top_embedding_rate"] == pytest.approx(0.5)
    assert row["long_range"] == pytest.approx(0.35, abs=1e-3)  # 0.7 on half of the tokens; the embedding excluded
    assert row["embedding"] == pytest.approx(0.3, abs=1e-3) and row["locality"] == pytest.approx(0.35, abs=1e-3)
    jumps = r.jumps[r.jumps["sublayer_label"] == "mlp4"]
    assert list(zip(jumps["distance"], jumps["count"], jumps["is_jump"])) == [(7.0, 10, True)]
    assert r.by_kind.set_index("kind").loc["mlp", "jump_rate"] == pytest.approx(0.5 / 4)
    per = token_table(tmp_path / "run", 0, 4, k=4)
    mlp4 = per[per["sublayer_label"] == "mlp4"]
    assert list(mlp4["jump"]) == [True, False, True, False]
    assert list(mlp4["top_source"]) == ["attn1", "emb", "attn1", "emb"]
    assert mlp4["top_distance"].iloc[0] == 7 and math.isnan(mlp4["top_distance"].iloc[1])
    w = token_weights(tmp_path / "run", 1)
    assert w[(w.sublayer_label == "mlp4") & (w.source_label == "emb")]["share"].item() == pytest.approx(0.6, abs=1e-3)


def test_shuffling_tokens_leaves_aggregates_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    a = full_alpha(64, lambda l, n: rng.dirichlet(np.full(n, 0.3), size=64))
    perm = rng.permutation(64)
    r1 = routing_stats(write_run(tmp_path / "a", a), chunk_tokens=7)
    r2 = routing_stats(write_run(tmp_path / "b", a[perm]), chunk_tokens=13)
    cols = ["locality", "long_range", "embedding", "entropy", "norm_entropy", "jump_rate", "spread", "off_usual_rate"]
    assert np.allclose(r1.sublayers[cols].to_numpy(dtype=float), r2.sublayers[cols].to_numpy(dtype=float),
                       equal_nan=True, atol=1e-9)
    assert np.allclose(r1.sources["mean_share"], r2.sources["mean_share"])
    assert r1.jumps.equals(r2.jumps)


def test_ragged_sources_are_masked():
    a = full_alpha(8, predecessor)
    garbage = np.where(np.isnan(a), 1e4, a)  # junk beyond each row's sources must be ignored
    r1 = routing_stats(MemoryRun(alpha=a, source_labels=LABELS, kind="full_attnres"))
    r2 = routing_stats(MemoryRun(alpha=garbage, source_labels=LABELS, kind="full_attnres"))
    assert r1.sublayers.equals(r2.sublayers)
    assert len(r1.sources) == sum(len(x) for x in LABELS)


def test_residual_unit_weights_are_uniform_shares_and_signed_weights_use_magnitudes():
    a = full_alpha(4, lambda l, n: np.ones(n))
    r = routing_stats(MemoryRun(alpha=a, source_labels=LABELS, kind="residual"))
    assert np.allclose(r.sources["mean_alpha"], 1.0)
    assert np.allclose(r.sources["mean_share"], 1.0 / r.sources.merge(r.sublayers, on="sublayer")["n_sources"])
    b = full_alpha(4, lambda l, n: np.r_[np.zeros(n - 1), -2.0])
    r = routing_stats(MemoryRun(alpha=b, source_labels=LABELS, kind="denseformer"))
    assert np.allclose(r.sublayers["locality"], 1.0) and (r.sources["mean_alpha"] <= 0).all()


def test_depth_sinks():
    rng = np.random.default_rng(1)
    a = full_alpha(200, lambda l, n: rng.dirichlet(np.ones(n), size=200))
    a[:, 7, :8] = rng.dirichlet(np.ones(8), size=200) * 0.2
    a[:, 7, 2] += 0.8  # mlp1 takes 0.8 + a little, for every token
    r = routing_stats(MemoryRun(alpha=a, source_labels=LABELS, kind="full_attnres"))
    sinks = r.sources[r.sources["is_sink"]]
    assert list(zip(sinks["sublayer_label"], sinks["source_label"])) == [("mlp4", "mlp1")]


def test_block_geometry_and_streams_without_distance():
    labels = [["emb"], ["emb", "partial"], ["emb", "block1"], ["emb", "block1", "partial"],
              ["emb", "block1", "block2"], ["emb", "block1", "block2", "block3"]]
    geo = geometry(labels, [1, 2, 3, 4, 5, 6], ["attn1", "mlp1", "attn2", "mlp2", "attn3", "final"])
    assert geo.unit == "blocks"
    d = geo.distance
    assert d[0, 0] == 1 and list(d[1, :2]) == [1, 0] and list(d[3, :3]) == [2, 1, 0] and list(d[5, :4]) == [4, 3, 2, 1]
    assert geo.nearest[3].tolist()[:3] == [False, False, True] and geo.nearest[2].tolist()[:2] == [False, True]
    dense = geometry([["emb", "layer1"]], [3], ["attn2"])
    assert list(dense.distance[0]) == [3, 1]
    hyper = [["stream1", "stream2"]] * 2
    a = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (5, 2, 1))
    r = routing_stats(MemoryRun(alpha=a, source_labels=hyper, kind="hyper"))
    assert r.sublayers["locality"].isna().all() and r.sublayers["jump_rate"].isna().all()
    assert r.jumps.empty and np.allclose(r.sublayers["entropy"], -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))


def test_nan_and_empty_inputs_give_clear_errors(tmp_path):
    a = full_alpha(8, predecessor)
    a[5, 3, 1] = np.nan
    with pytest.raises(AnalysisError, match=r"NaN depth-attention weight .*token 5, sublayer mlp2"):
        routing_stats(MemoryRun(alpha=a, source_labels=LABELS, kind="full_attnres"))
    with pytest.raises(RunError, match="NaN depth-attention weight"):
        routing_stats(write_run(tmp_path / "nan", a))
    empty = full_alpha(0, predecessor)
    with pytest.raises(AnalysisError, match="holds no tokens"):
        routing_stats(MemoryRun(alpha=empty, source_labels=LABELS, kind="full_attnres"))
    with pytest.raises(AnalysisError, match="did not capture"):
        routing_stats(MemoryRun(input_rms=np.ones((3, 2)), source_labels=[[], []]))
    zero = full_alpha(2, lambda l, n: np.zeros(n))
    with pytest.raises(AnalysisError, match="all-zero"):
        routing_stats(MemoryRun(alpha=zero, source_labels=LABELS, kind="full_attnres"))
    with pytest.raises(RunError, match="no such run directory"):
        routing_stats(tmp_path / "missing")


def test_streamed_statistics_match_a_plain_numpy_computation():
    rng = np.random.default_rng(3)
    t, k = 300, 3
    a = full_alpha(t, lambda l, n: rng.dirichlet(np.full(n, 0.5), size=t))
    r = routing_stats(MemoryRun(alpha=a, source_labels=LABELS, kind="full_attnres"), k=k, chunk_tokens=64).sublayers
    for l in range(1, L + 1):
        p = a[:, l - 1, :l].astype(np.float64)
        d, j = l - np.arange(l), np.arange(l)
        top = p.argmax(1)
        expect = [p[:, -1].mean(), (p * ((d > k) & (j > 0))).sum(1).mean(), -(p * np.log(p)).sum(1).mean(),
                  ((d[top] > k) & (top > 0)).mean(), p[:, 0].mean()]
        got = r.iloc[l - 1][["locality", "long_range", "entropy", "jump_rate", "embedding"]].to_numpy(dtype=float)
        assert np.allclose(got, expect, atol=1e-5), l
