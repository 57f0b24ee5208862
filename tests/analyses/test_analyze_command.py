"""`depthscope analyze` end to end on tiny recorded runs (real checkpoints and runs), and the causal check."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from depthscope.analyses import AnalysisError
from depthscope.analyses.causal import causal_ablation, causal_summary
from depthscope.cli import main
from depthscope.models.checkpoint import save_checkpoint
from depthscope.record import record_run
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

torch.set_num_threads(1)


def tiny(mixer, seed=0):
    return tiny_model(mixer, seed, max_seq_len=32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    out = {}
    for mixer in ("block_attnres", "residual"):
        ck = save_checkpoint(tiny(mixer), root / f"ck_{mixer}", training={"train_config": {"seq_len": 32}})
        record_run(ck, "recall", root / mixer, tokens=256, grads=True, seq_len=32, batch_size=4, progress=False)
        out[mixer] = root / mixer
    return out


def test_analyze_writes_tables_and_a_summary(runs, tmp_path, capsys):
    out = tmp_path / "analysis"
    status = main(["analyze", str(runs["block_attnres"]), "--vs", str(runs["residual"]), "--out", str(out),
                   "--resamples", "100", "--causal-tokens", "64", "--unit", "blocks"])
    assert status == 0
    for name in ("routing", "routing_sources", "routing_jumps", "signal", "signal_growth", "gradient_uniformity",
                 "mixing", "mixing_rank", "estimates", "compare", "signal_vs_baseline", "block_resets", "causal",
                 "baseline_routing"):
        assert (out / f"{name}.parquet").is_file() and (out / f"{name}.csv").is_file(), name
    routing = pd.read_parquet(out / "routing.parquet")
    assert {"sublayer", "sublayer_label", "kind", "locality", "jump_rate"} <= set(routing.columns)
    summary = (out / "summary.md").read_text()
    assert "Baseline hidden-state RMS grows with depth" in summary and "Locality is preserved" in summary
    assert "Long-range jumps are present" in summary and "Causal check" in summary
    cmp = pd.read_parquet(out / "compare.parquet").set_index("statistic")
    assert {"diff", "ci_low", "ci_high", "p_value"} <= set(cmp.columns) and "input_rms_last_first" in cmp.index


def test_analyze_rejects_a_missing_run(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert err.value.code == 2


def test_causal_ablation_of_a_source_with_no_weight_changes_nothing():
    m = tiny("full_attnres")
    x = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, 1)
    table = causal_ablation(m, x, y, sublayers=[3, 4])
    assert set(table["family"]) == {"embedding", "recent", "history"}
    assert np.isfinite(table["delta_loss"]).all() and ((table["mass"] > 0) & (table["mass"] < 1)).all()
    # sublayer 1 has only the embedding: removing it leaves h_1 = 0, a real change
    one = causal_ablation(m, x, y, sublayers=[1])
    assert list(one["family"]) == ["embedding"] and one["mass"].item() == pytest.approx(1.0)
    # a residual model: removing the embedding from h_l is h_l - v_0
    res = causal_ablation(tiny("residual"), x, y, sublayers=[2])
    assert set(res["family"]) == {"embedding", "recent"} and np.allclose(res["mass"], 0.5)
    assert set(causal_summary(table)["family"]) == {"all", "embedding", "recent", "history"}
    with pytest.raises(AnalysisError, match="hyper"):
        causal_ablation(tiny("hyper"), x, y)


def test_source_ablation_table_for_the_dashboard(runs):
    from depthscope.causal_check import source_ablation

    table = source_ablation(runs["block_attnres"], max_tokens=32)
    assert {"sublayer_label", "source_label", "mean_share", "delta_loss"} <= set(table.columns)
    assert set(table["source_label"]) == {"emb", "partial", "block1", "block2"}
    assert np.isfinite(table["delta_loss"]).all()


def test_the_dashboard_ablation_view_runs_the_workflow_the_command_hands_in(runs):
    """The dashboard does not load checkpoints itself: `depthscope serve` hands it causal_check.source_ablation."""
    from depthscope.causal_check import source_ablation
    from depthscope.dashboard.runs import Catalogue
    from depthscope.dashboard.views import FIGURES

    root = runs["block_attnres"].parent
    handed = Catalogue(root, background=False, ablation=lambda run: source_ablation(run, max_tokens=32))
    fig = FIGURES["ablation"].build(handed, {"run": "block_attnres"})
    assert len(fig.data) and len(fig.data[0].y) > 0 and np.isfinite(np.asarray(fig.data[0].y, float)).all()
    bare = FIGURES["ablation"].build(Catalogue(root, background=False), {"run": "block_attnres"})
    assert not bare.data and "not at hand" in bare.layout.annotations[0].text
