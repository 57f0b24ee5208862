"""Signal growth, gradient uniformity and bootstrap comparisons on hand-made per-token arrays."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from depthscope.analyses import AnalysisError, MemoryRun
from depthscope.analyses.comparison import compare, estimate, grouped_sums, param_grad_sums, statistics
from depthscope.analyses.gradients import gradient_profile, gradient_uniformity, uniformity
from depthscope.analyses.signal import block_bounds_of, block_resets, signal_growth, signal_profile

L = 8


def growing(tokens=400, rate=0.5, seed=0, docs=40):
    """input_rms = exp(rate * l) x lognormal noise; 8 sublayers; documents of tokens/docs tokens."""
    rng = np.random.default_rng(seed)
    l = np.arange(1, L + 1)
    rms = np.exp(rate * l)[None, :] * np.exp(rng.normal(0, 0.1, (tokens, L)))
    return MemoryRun(input_rms=rms, document=np.arange(tokens) // (tokens // docs), loss=rng.normal(2, 0.1, tokens),
                     source_labels=[[]] * L)


def test_signal_profile_and_growth():
    run = growing()
    prof = signal_profile(run)
    assert list(prof["quantity"].unique()) == ["input_rms"] and len(prof) == L
    p50 = prof["p50"].to_numpy()
    assert np.allclose(p50, np.exp(0.5 * np.arange(1, L + 1)), rtol=0.05)  # histogram resolution ~2.3 %
    assert (prof["p10"] < prof["p50"]).all() and (prof["p50"] < prof["p90"]).all()
    g = signal_growth(prof).set_index("kind").loc["all"]
    assert g["log_slope"] == pytest.approx(0.5, abs=0.02) and g["monotone_share"] == 1.0
    assert g["last_first"] == pytest.approx(math.exp(0.5 * 7), rel=0.05)
    nan_run = MemoryRun(input_rms=np.where(np.arange(L) == 3, np.nan, 1.0)[None].repeat(5, 0), source_labels=[[]] * L)
    assert len(signal_profile(nan_run)) == L - 1  # a sublayer with no tap recorded is skipped
    with pytest.raises(AnalysisError, match="signal growth needs"):
        signal_profile(MemoryRun(loss=np.ones(3)))


def test_block_resets():
    prof = pd.DataFrame({"sublayer": np.arange(1, 7), "quantity": "input_rms",
                         "mean": [1.0, 2.0, 1.5, 3.0, 1.2, 2.4]})
    r = block_resets(prof, [(1, 2), (3, 4), (5, 6)])
    assert list(r["within"]) == [2.0, 2.0, 2.0] and list(r["reset"]) == [None, True, True]
    assert r["boundary"].iloc[1] == pytest.approx(0.75)
    run = MemoryRun(input_rms=np.ones((2, 4)), source_labels=[["emb"], ["emb", "partial"], ["emb", "block1"],
                                                                  ["emb", "block1", "partial"]])
    assert block_bounds_of(run) == [(1, 2), (3, 4)]


def test_gradient_uniformity():
    assert uniformity([1, 1, 1, 1]) == {"n": 4, "cv": 0.0, "max_min": 1.0, "early_late": 1.0}
    u = uniformity([4, 3, 2, 1])
    assert u["cv"] == pytest.approx(np.std([4, 3, 2, 1]) / 2.5) and u["max_min"] == 4 and u["early_late"] == 4
    steps = pd.DataFrame({"step": np.repeat([0, 1], L), "sublayer": np.tile(np.arange(1, L + 1), 2),
                          "label": [f"{'attn' if s % 2 else 'mlp'}{(s + 1) // 2}" for s in np.tile(np.arange(1, L + 1), 2)],
                          "grad_norm": np.tile(np.arange(L, 0, -1.0), 2), "n_params": 100, "rank": 0})
    run = MemoryRun(grad_rms=np.ones((10, L)), source_labels=[[]] * L, grad_norms=steps)
    prof = gradient_profile(run)
    assert np.allclose(prof["param_grad_norm"], np.arange(L, 0, -1.0)) and np.allclose(prof["param_grad_rms"], prof["param_grad_norm"] / 10)
    table = gradient_uniformity(prof).set_index(["quantity", "kind"])
    assert table.loc[("grad_rms", "all"), "cv"] == 0 and table.loc[("param_grad_norm", "all"), "early_late"] == pytest.approx(7.5 / 1.5)
    ps = param_grad_sums(run)
    assert ps.n_groups == 2 and estimate(ps, "param_grad_max_min")["value"] == pytest.approx(8.0)
    with pytest.raises(AnalysisError, match="--grads"):
        gradient_profile(MemoryRun(input_rms=np.ones((2, 2)), source_labels=[[], []]))


def test_bootstrap_estimates_and_comparisons():
    a, b, c = growing(seed=0), growing(seed=1), growing(seed=2, rate=0.3)
    sa, sb, sc = (grouped_sums(r, unit="documents") for r in (a, b, c))
    assert sa.n_groups == 40 and sa.unit == "documents"
    e = estimate(sa, "input_rms_log_slope", n_resamples=300)
    assert e["ci_low"] < 0.5 < e["ci_high"] and e["ci_high"] - e["ci_low"] < 0.02
    same = compare(sa, sb, "input_rms_log_slope", n_resamples=300)
    assert same["ci_low"] < 0 < same["ci_high"] and same["p_value"] > 0.01
    diff = compare(sa, sc, "input_rms_log_slope", n_resamples=300)
    assert diff["diff"] == pytest.approx(0.2, abs=0.02) and diff["ci_low"] > 0 and diff["p_value"] < 1e-6
    assert estimate(grouped_sums(a, unit="blocks", block_tokens=50), "loss")["n_groups"] == 8
    assert grouped_sums(a, unit="tokens").n_groups == 400
    assert "input_rms@mlp2" in statistics(sa) and "input_rms_cv" in statistics(sa)
    with pytest.raises(AnalysisError, match="not available"):
        estimate(sa, "locality")
    with pytest.raises(AnalysisError, match="no tokens"):
        grouped_sums(MemoryRun(input_rms=np.ones((0, 2)), source_labels=[[], []]))


def test_routing_statistics_with_intervals():
    rng = np.random.default_rng(0)
    labels = [["emb", "attn1", "mlp1"][:l] for l in (1, 2, 3)]
    a = np.full((300, 3, 3), np.nan, dtype=np.float32)
    for l in (1, 2, 3):
        a[:, l - 1, :l] = rng.dirichlet(np.ones(l), size=300)
    run = MemoryRun(alpha=a, source_labels=labels, kind="full_attnres", document=np.arange(300) // 10)
    s = grouped_sums(run)
    assert s.unit == "documents"  # 30 documents >= 20
    from depthscope.analyses.routing import routing_stats

    r = routing_stats(run).sublayers
    est = estimate(s, "locality", n_resamples=200)
    assert est["value"] == pytest.approx(r["locality"][r["kind"].isin(["attn", "mlp"])].mean())
    assert est["ci_low"] < est["value"] < est["ci_high"]
    assert estimate(s, "embedding_attn")["value"] == pytest.approx(r.set_index("sublayer_label").loc[["attn1", "attn2"], "embedding"].mean())


def test_verdicts():
    from depthscope.analyses.report import verdict

    assert verdict(0.1, 0.3, 0.0, ">") == "holds" and verdict(-0.3, -0.1, 0.0, ">") == "does not hold"
    assert verdict(-0.1, 0.1, 0.0, "<") == "inconclusive" and verdict(-0.3, -0.1, 0.0, "<") == "holds"
    assert verdict(1e-9, 2e-9, 0.0, ">") == "does not hold"  # float rounding does not clear a threshold
    assert verdict(float("nan"), 1.0, 0.0, ">").startswith("inconclusive")
