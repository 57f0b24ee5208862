"""Figure builders on small known data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from depthscope.dashboard import figures as F
from depthscope.dashboard.figures.routing import matrix


def routing_frame():
    # sublayers attn1 (sources emb), mlp1 (emb, attn1), attn2 (emb, attn1, mlp1)
    rows = [(0, "attn1", 0, "emb", 1.0), (1, "mlp1", 0, "emb", 0.25), (1, "mlp1", 1, "attn1", 0.75),
            (2, "attn2", 0, "emb", 0.2), (2, "attn2", 1, "attn1", 0.3), (2, "attn2", 2, "mlp1", 0.5)]
    f = pd.DataFrame(rows, columns=["slot", "label", "source_index", "source", "mean"])
    f["count"] = 10
    f["std"] = 0.1
    return f


def test_matrix_places_each_weight_at_its_labels():
    z, rows, cols, slots, custom = matrix(routing_frame())
    assert rows == ["attn1", "mlp1", "attn2"] and cols == ["emb", "attn1", "mlp1"]
    assert z[2, 2] == 0.5 and z[1, 1] == 0.75 and np.isnan(z[0, 1])
    assert custom[2, 2, 0] == 2 and custom[2, 2, 1] == 2 and custom[2, 2, 2] == 10


def test_routing_heatmap_splits_attention_and_mlp_panels_on_one_scale():
    fig = F.routing_heatmap(routing_frame(), "t")
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == 2
    assert list(heat[0].y) == ["attn1", "attn2"] and list(heat[1].y) == ["mlp1"]
    assert list(heat[1].x) == ["emb", "attn1"]  # unused columns dropped per panel
    assert fig.layout.coloraxis.cmin == 0.2 and fig.layout.coloraxis.cmax == 1.0
    assert [a.text for a in fig.layout.annotations] == ["pre-attention", "pre-MLP / final"]
    assert "tokens" in heat[0].hovertemplate


def test_difference_uses_a_symmetric_diverging_scale():
    f = routing_frame()
    f["mean"] = f["mean"] - 0.5
    fig = F.routing_difference(f)
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax == -0.5


def test_empty_inputs_give_a_message_not_an_error():
    fig = F.routing_heatmap(pd.DataFrame(), "t")
    assert "no depth-attention" in fig.layout.annotations[0].text
    assert F.signal_vs_depth({}, "output_rms").layout.annotations


def test_signal_ratio_to_baseline():
    def prof(scale):
        return pd.DataFrame({"label": ["attn1", "mlp1"], "mean": [scale, 2 * scale], "p5": [scale / 2] * 2,
                             "p25": [scale] * 2, "p50": [scale, 2 * scale], "p75": [scale] * 2, "p95": [2 * scale] * 2})

    fig = F.signal_vs_depth({"run": prof(3.0), "base": prof(1.0)}, "output_rms", baseline="base")
    ratio = [t for t in fig.data if t.name == "run / base"]
    assert np.allclose(ratio[0].y, [3.0, 3.0])
    assert fig.layout.yaxis.type == "log"
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 4  # two bands per run


def test_gradients_shows_uniformity_in_the_legend():
    f = pd.DataFrame({"label": ["attn1", "mlp1"], "mean": [1.0, 4.0], "lo": [0.5, 3.0], "hi": [1.5, 5.0]})
    fig = F.gradients_vs_depth({"a": f}, {"a": {"cv": 0.6, "max_min": 4.0}})
    assert "CV 0.60" in fig.data[0].name and "max/min 4.0" in fig.data[0].name


def test_token_text_lays_out_lines_and_keeps_token_index():
    frame = pd.DataFrame({"index": [10, 11, 12, 13], "char": ["a", "\\n", "b", " "], "embedding": [0.1, 0.2, 0.3, 0.4]})
    fig = F.token_text(frame, "embedding", width=8)
    z, text, index = np.asarray(fig.data[0].z), np.asarray(fig.data[0].text), np.asarray(fig.data[0].customdata)
    assert z.shape == (2, 8) and index[0, 0] == 10 and index[1, 0] == 12 and text[1, 1] == "·"
    assert z[1, 1] == 0.4


def test_token_heatmap_and_norm_profile():
    values = np.arange(6, dtype=float).reshape(3, 2)  # [tokens, slots]
    fig = F.token_heatmap(values, ["attn1", "mlp1"], np.array([5, 6, 7]), ["a", "b", "c"], "embedding")
    assert np.asarray(fig.data[0].z).shape == (2, 3) and fig.data[0].customdata[0][2] == 7
    norms = pd.DataFrame({"label": ["attn1", "mlp1"], "quantity": ["input_rms"] * 2, "value": [1.0, 2.0]})
    assert F.norm_profile(norms).layout.yaxis.type == "log"


def test_statistics_plots():
    jumps = pd.DataFrame({"kind": ["attn", "attn", "mlp"], "distance": [1.0, 3.0, 1.0], "count": [3, 1, 4],
                          "is_jump": [False, True, False]})
    fig = F.jump_histogram(jumps, k=2)
    assert [list(t.y) for t in fig.data] == [[0.75, 0.25], [1.0]]
    subl = pd.DataFrame({"sublayer_label": ["attn1", "mlp1"], "long_range": [0.1, 0.2], "embedding": [0.5, 0.3],
                         "locality": [0.4, 0.5]})
    assert len(F.long_range_per_sublayer(subl, k=2).data) == 3
    src = pd.DataFrame({"sublayer_label": ["mlp1", "mlp1"], "source_label": ["emb", "attn1"],
                        "mean_share": [0.8, 0.2], "std_share": [0.05, 0.1], "is_sink": [True, False]})
    sinks = F.sinks(src)
    assert [t.name for t in sinks.data] == ["other sources", "depth sinks"]
    abl = pd.DataFrame({"sublayer_label": ["mlp1"], "source_label": ["emb"], "mean_share": [0.8], "delta_loss": [0.1]})
    assert F.ablation_vs_mass(abl).data[0].y[0] == 0.1
    steps = pd.DataFrame({"step": [0, 100, 0, 100], "kind": ["attn", "attn", "mlp", "mlp"], "embedding": [0.5, 0.4, 0.5, 0.3]})
    assert len(F.statistic_over_steps(steps, "embedding", step=100).data) == 2
    unif = pd.DataFrame({"training": ["t", "t"], "step": [0, 10], "cv": [0.5, 0.2], "max_min": [3, 2]})
    assert list(F.uniformity_over_steps(unif).data[0].y) == [0.5, 0.2]


def test_cell_distribution():
    fig = F.cell_distribution(np.linspace(0, 1, 5), np.array([1, 2, 3, 4]), "w")
    assert list(fig.data[0].y) == [1, 2, 3, 4] and np.allclose(fig.data[0].x, [0.125, 0.375, 0.625, 0.875])
