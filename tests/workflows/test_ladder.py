"""`depthscope reproduce --ladder`: a tiny real ladder end to end (training, recording, analyses, report), its
resume, the combination over seeds and the trend verdicts, and the command line."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from depthscope.cli import main
from depthscope.ladder import (RESETS, LadderConfig, Rung, combine_seeds, ladder, ladder_claims, parse_corpora,
                               parse_rungs, trends)
from depthscope.ladder_report import FINDINGS
from depthscope.models.config import ModelConfig
from depthscope.models.trainer import TrainConfig
from depthscope.reproduce import ReproduceConfig

OUTCOMES = {"holds", "does not hold", "trend towards the paper", "trend away from the paper", "mixed / inconclusive"}


def _tiny(out) -> LadderConfig:
    # Block size 2: rung 1 has N = 2 blocks (one boundary), rung 2 N = 3 (two boundaries) per seed.
    # 768 recorded tokens: three bootstrap blocks per recording (analyses.groups.BLOCK_TOKENS)
    recipe = ReproduceConfig(out=None, model=ModelConfig(n_heads=2), train=TrainConfig(seq_len=32, batch_size=8),
                             record_tokens=768)
    return LadderConfig(out=out, rungs=(Rung(2, 16, 8 * 32 * 6), Rung(3, 24, 8 * 32 * 8)),
                        corpora={"pydoc": None}, seeds=(0, 1), block_size=2, recipe=recipe, progress=False)


def _weights(cfg: LadderConfig) -> dict[str, int]:
    return {str(p.relative_to(cfg.out)): p.stat().st_mtime_ns for p in (cfg.out / "work").rglob("model.safetensors")}


def test_tiny_ladder_end_to_end_and_resume(tmp_path):
    cfg = _tiny(tmp_path / "ladder")
    report = ladder(cfg)
    text = report.read_text()

    losses = pd.read_csv(cfg.out / "losses.csv")
    # 2 rungs x 2 mixers x 2 seeds, every one trained (its held-out loss went down)
    assert len(losses) == 8 and set(losses.mixer) == {"residual", "block_attnres"} and set(losses.seed) == {0, 1}
    assert (losses.final_heldout_loss < losses.first_heldout_loss).all() and list(losses.rung.unique()) == [1, 2]
    # the recipe is reproduce's: the rung's shape, Block AttnRes N = sublayers / S
    assert set(zip(losses.n_layers, losses.d_model, losses.n_blocks)) == {(2, 16, 2), (3, 24, 3)}

    table = pd.read_csv(cfg.out / "ladder.csv")
    assert set(table.claim) == set(ladder_claims())
    for key in ("locality", "embedding_attn_mlp", "bounded3", "embedding", "growth"):
        rows = table[(table.claim == key) & (table.corpus == "pydoc")].sort_values("rung")
        assert len(rows) == 2 and (rows.seeds == 2).all()
        assert np.isfinite(rows[["value", "ci_low", "ci_high"]].to_numpy()).all()
        assert (rows.ci_low <= rows.value).all() and (rows.value <= rows.ci_high).all()
        assert (rows.ci_high > rows.ci_low).all()  # real spread: two seeds and a bootstrap
    resets = table[(table.claim == RESETS.key) & (table.corpus == "pydoc")].set_index("rung")
    assert resets.loc[1, "boundaries"] == 2 and resets.loc[2, "boundaries"] == 4  # (N - 1) x 2 seeds
    seeds = pd.read_csv(cfg.out / "ladder_seeds.csv")
    pooled = seeds[(seeds.claim == "locality") & (seeds.corpus == "pydoc") & (seeds.rung == 1)]
    assert len(pooled) == 2 and table[(table.claim == "locality") & (table.corpus == "pydoc") & (table.rung == 1)
                                      ].value.iloc[0] == pytest.approx(pooled.value.mean())

    trend = pd.read_csv(cfg.out / "trends.csv")
    assert set(trend.outcome) <= OUTCOMES
    two = trend[(trend.corpus == "pydoc") & (trend.claim == "locality")].iloc[0]
    assert two.rungs == 2 and two.change == pytest.approx(two["last"] - two["first"])
    assert two.change_low < two.change < two.change_high

    # the report: the rungs, the loss table, a line and a figure per finding, the table of every claim
    assert "Part-way" not in text
    assert "| 2 | 3 | 6 | 24 | 3 |" in text and "| pydoc | 1 |" in text and "| pydoc | 2 |" in text
    assert "| claim | statistic | pydoc rung 1 | pydoc rung 2 | outcome |" in text
    for key in FINDINGS:
        svg = (cfg.out / "figures" / f"{key}.svg").read_text()
        assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
        assert f"](figures/{key}.svg)" in text
    locality_line = next(line for line in text.splitlines() if line.startswith("- Locality"))
    assert f"pydoc: **{two.outcome}**" in locality_line and "change bottom -> top" in locality_line
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        assert (cfg.out / link).exists()

    # Resume: nothing retrains and the tables come back the same (figures off: they were checked above).
    cfg.figures = False
    before = _weights(cfg)
    assert len(before) == 8
    ladder(cfg)
    assert _weights(cfg) == before
    pd.testing.assert_frame_equal(pd.read_csv(cfg.out / "ladder.csv"), table)

    # A changed rung retrains only that rung's models.
    cfg.rungs = (cfg.rungs[0], Rung(3, 24, 8 * 32 * 7))
    ladder(cfg)
    after = _weights(cfg)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {k for k in before if "L6_d24" in k} and len(changed) == 4


def _rows(corpus, values_by_rung, claim="locality", spread=0.01):
    rows = []
    for rung, values in values_by_rung.items():
        for seed, v in enumerate(values):
            rows.append(dict(corpus=corpus, rung=rung, rung_name=f"r{rung}", n_layers=rung, sublayers=2 * rung,
                             d_model=16 * rung, n_blocks=rung, params=1000 * 10 ** rung, tokens=1000 * rung,
                             claim=claim, value=v, ci_low=v - spread, ci_high=v + spread, seed=seed))
    return pd.DataFrame(rows)


def test_combine_seeds_adds_the_seed_spread_to_the_bootstrap_spread():
    table = combine_seeds(_rows("pydoc", {1: [0.10, 0.14]}))
    row = table.iloc[0]
    se_within = 0.02 / (2 * 1.959963984540054)
    expected = math.sqrt(se_within ** 2 / 2 + np.var([0.10, 0.14], ddof=1) / 2)
    assert row.value == pytest.approx(0.12) and row.se == pytest.approx(expected)
    assert row.ci_low == pytest.approx(0.12 - 1.959963984540054 * expected)
    assert row.verdict == "holds"  # locality_excess > 0 with the whole interval above


def test_trends_name_the_direction_against_the_paper():
    frame = pd.concat([
        _rows("a", {1: [-0.20, -0.19], 2: [-0.10, -0.11], 3: [-0.02, -0.03]}),  # below 0, rising: towards
        _rows("b", {1: [-0.05, -0.06], 2: [-0.15, -0.16], 3: [-0.30, -0.31]}),  # falling further: away
        _rows("c", {1: [0.05, 0.06], 2: [0.04, 0.05], 3: [0.05, 0.06]}),  # above 0 at every rung
        _rows("d", {1: [-0.05, -0.06], 2: [-0.05, -0.06], 3: [-0.055, -0.056]}),  # below, flat
    ], ignore_index=True)
    out = trends(combine_seeds(frame)).set_index("corpus")
    assert out.loc["a", "outcome"] == "trend towards the paper" and out.loc["a", "change_low"] > 0
    assert out.loc["b", "outcome"] == "trend away from the paper" and out.loc["b", "change_high"] < 0
    assert out.loc["c", "outcome"] == "holds"
    assert out.loc["d", "outcome"] == "does not hold" and out.loc["d", "direction"] == "no clear trend"
    # a claim on the other side (< 0): a falling value moves towards the paper
    falling = trends(combine_seeds(_rows("e", {1: [0.3, 0.31], 2: [0.1, 0.11]}, claim="bounded3")))
    assert falling.iloc[0].direction == "towards the paper"


def test_resets_pool_every_boundary_of_every_seed():
    rows = _rows("pydoc", {1: [-0.1, -0.3, 0.05, -0.2]}, claim=RESETS.key).assign(ci_low=np.nan, ci_high=np.nan)
    row = combine_seeds(rows).iloc[0]
    assert row.boundaries == 4 and row.resets == 3 and row.value == pytest.approx(-0.1375)
    assert row.ci_low < row.value < row.ci_high


def test_parsers_and_config_checks():
    assert parse_rungs("4x48:250k, 16x80:1M") == (Rung(4, 48, 250_000), Rung(16, 80, 1_000_000))
    assert parse_corpora("pydoc,bible:1+3") == {"pydoc": None, "bible": (1, 3)}
    with pytest.raises(ValueError, match="BLOCKSxWIDTH:TOKENS"):
        parse_rungs("4x48")
    with pytest.raises(ValueError, match="rungs \\[4\\]"):
        LadderConfig(out=None, corpora={"pydoc": (1, 4)})


@pytest.mark.parametrize("argv, message", [
    (["--rungs", "8-64:1M"], "expected BLOCKSxWIDTH:TOKENS"),
    (["--corpora", "pydoc,bible:9"], "not among 1..3"),
    (["--corpora", "bible:x"], "NAME:RUNG+RUNG"),
])
def test_command_line_rejects_bad_ladders(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--ladder", "--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written


def test_combine_seeds_without_a_bootstrap_interval_uses_the_seed_spread_only():
    two = _rows("pydoc", {1: [0.10, 0.14]}).assign(ci_low=np.nan, ci_high=np.nan)
    row = combine_seeds(two).iloc[0]
    assert row.se == pytest.approx(math.sqrt(np.var([0.10, 0.14], ddof=1) / 2))
    one = combine_seeds(_rows("pydoc", {1: [0.10]}).assign(ci_low=np.nan, ci_high=np.nan)).iloc[0]
    assert one.value == pytest.approx(0.10) and math.isnan(one.ci_low) and one.verdict == "inconclusive (no CI)"
