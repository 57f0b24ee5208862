"""The ladder's tables, figures (one per claim, SVG in the export style) and report.md (depthscope.ladder)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from depthscope.ladder import MIXERS, LadderConfig, combine_seeds, ladder_claims, trends

# The three findings the demo report could not confirm at one scale, first in the report and the figures.
FINDINGS = ("locality", "embedding_attn_mlp", "bounded3", "resets")
SHORT_TITLES = {
    "growth": "Baseline hidden state grows with depth",
    "growth3": "Baseline grows after the first block",
    "attnres_growth": "Block AttnRes hidden state grows with depth",
    "bounded": "Input RMS growth vs baseline (last/first)",
    "bounded3": "Bounded: input RMS slope after block 1, vs baseline",
    "output_bounded": "Output RMS growth vs baseline",
    "uniform_grads": "Activation-gradient CV vs baseline",
    "uniform_param_grads": "Parameter-gradient CV vs baseline",
    "locality": "Locality: nearest-source weight above uniform",
    "embedding": "Embedding weight",
    "embedding_attn_mlp": "Embedding weight, pre-attention minus pre-MLP",
    "sharper_mlp": "Entropy, pre-MLP minus pre-attention",
    "jumps": "Long-range jump rate",
    "loss": "Held-out loss vs baseline (recorded text)",
    "resets": "Saw-tooth: log RMS ratio at block boundaries",
}


def _ci(value: float, low: float, high: float, digits: int = 3) -> str:
    from depthscope.reproduce import _fmt_ci

    return _fmt_ci(value, low, high, digits)


def figures(cfg: LadderConfig, table: pd.DataFrame, seeds: pd.DataFrame,
            only: tuple[str, ...] | None = None) -> dict[str, str]:
    """One small SVG per claim (or per claim in `only`): the statistic against parameters, per corpus; returns
    claim -> path relative to the ladder's folder."""
    from depthscope.dashboard import line_bytes
    from depthscope.dashboard import ladder_lines

    folder = cfg.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, claim in ladder_claims().items():
        part = table[table["claim"] == key]
        if only is not None and key not in only:
            continue
        if not len(part):
            continue
        side = "paper: above" if claim.side == ">" else "paper: below"
        fig = ladder_lines(part, claim.statistic + (" (Block - residual)" if claim.scope == "diff" else ""),
                           SHORT_TITLES.get(key, key), seeds=seeds[seeds["claim"] == key],
                           threshold=claim.threshold, threshold_text=side)
        path = folder / f"{key}.svg"
        path.write_bytes(line_bytes(fig, "svg", "single"))
        paths[key] = str(path.relative_to(cfg.out))
    return paths


def _outcome_line(claim, trend_rows: pd.DataFrame, table: pd.DataFrame) -> str:
    parts = []
    for row in trend_rows.itertuples():
        steps = table[(table["corpus"] == row.corpus) & (table["claim"] == claim.key)].sort_values("params")
        values = " -> ".join(f"{_ci(r.value, r.ci_low, r.ci_high)} ({r.verdict})" for r in steps.itertuples())
        change = (f"change bottom -> top {_ci(row.change, row.change_low, row.change_high)} ({row.direction})"
                  if row.rungs > 1 else "one rung only")
        parts.append(f"{row.corpus}: **{row.outcome}** — {claim.statistic} {values}; {change}")
    return f"- {SHORT_TITLES.get(claim.key, claim.key)} ({claim.statistic} {claim.side} {claim.threshold:g}). " \
           + "; ".join(parts) + "."


def write_report(cfg: LadderConfig, losses: pd.DataFrame, seeds: pd.DataFrame,
                 progress: tuple[int, int] | None = None) -> Path:
    """Tables, figures and report.md from the rungs done so far (`progress`: rungs done, rungs in all)."""
    from depthscope.reproduce import loss_table

    table = combine_seeds(seeds)
    table.to_csv(cfg.out / "ladder.csv", index=False)
    trend = trends(table)
    trend.to_csv(cfg.out / "trends.csv", index=False)
    partial = progress is not None and progress[0] < progress[1]
    paths = figures(cfg, table, seeds, only=FINDINGS if partial else None) if cfg.figures else {}
    claims = ladder_claims()
    rc = cfg.recipe
    lines = [
        "# Do the paper's findings appear with scale? The ladder",
        "",
        f"Written by `depthscope reproduce --ladder` (settings in `settings.json`). The demo report's comparison, "
        f"residual against Block AttnRes, repeated at {len(cfg.rungs)} rung{'s' * (len(cfg.rungs) != 1)} that grow "
        f"depth, width and training "
        f"tokens together, with the same recipe (batch {rc.train.batch_size} x {rc.train.seq_len} bytes, peak "
        f"learning rate {rc.train.lr:g}, {rc.model.n_heads} heads, warm-up and evaluation as in `reproduce`), "
        f"Block AttnRes with "
        f"S = {cfg.block_size} sublayers per block at every rung, seeds {', '.join(map(str, cfg.seeds))}, each "
        f"seed recorded over {rc.record_tokens:,} held-out tokens with gradients and analysed against its own "
        f"residual baseline.",
        "",
        *([f"**Part-way: {progress[0]} of {progress[1]} (corpus, rung) jobs done**; the ladder resumes where it "
           "stopped when run again with the same settings.", ""] if partial else []),
        "| rung | transformer blocks | sublayers | d_model | Block AttnRes N | parameters | training tokens | corpora |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, rung in enumerate(cfg.rungs, start=1):
        rows = table[table["rung"] == i]
        params = int(rows["params"].iloc[0]) if len(rows) else 0
        tokens = int(rows["tokens"].iloc[0]) if len(rows) else rung.budget_tokens
        corpora = ", ".join(c for c in cfg.corpora if i in [j for j, _ in cfg.rungs_of(c)])
        lines.append(f"| {i} | {rung.n_layers} | {2 * rung.n_layers} | {rung.d_model} | "
                     f"{cfg.reproduce_config('pydoc', rung).model.n_blocks} | {params:,} | {tokens:,} | {corpora} |")
    lines += [
        "",
        "Intervals: each seed's recording gives a 95 % bootstrap interval (over token blocks, as in the demo "
        "report); a rung's value is the mean over seeds, its interval adds the spread between seeds to the "
        "bootstrap spread (normal approximation; with two seeds the between-seed part is itself uncertain). The "
        "saw-tooth statistic pools every block boundary of every seed (Student t). A trend is the top rung minus "
        "the bottom rung with its 95 % interval: *towards the paper* when it lies wholly on the paper's side.",
        "",
        "## Held-out loss at each rung",
        "",
        "| corpus | rung | parameters | mixer | seeds | final held-out loss (95 % CI over seeds) | minus residual, paired by seed | training tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (corpus, rung, params), group in losses.groupby(["corpus", "rung", "params"], sort=False):
        for row in loss_table(group).itertuples():
            lines.append(f"| {corpus} | {rung} | {params:,} | {row.mixer} | {row.seeds} | "
                         f"{_ci(row.loss, row.loss_low, row.loss_high)} | "
                         f"{_ci(row.vs_baseline, row.vs_baseline_low, row.vs_baseline_high)} | "
                         f"{row.tokens_per_s:,.0f} |")
    lines += ["", "## The findings the demo report could not confirm", ""]
    for key in FINDINGS:
        if key not in paths:
            continue
        lines += [_outcome_line(claims[key], trend[trend["claim"] == key], table), "",
                  f"![{SHORT_TITLES[key]}]({paths[key]})", ""]
    resets = table[table["claim"] == "resets"]
    if len(resets):
        lines += ["Block boundaries with a drop in input RMS (all seeds): " + ", ".join(
            f"{r.corpus} rung {r.rung}: {int(r.resets)} of {int(r.boundaries)}" for r in resets.itertuples()) + ".", ""]
    lines += ["## Every claim at every rung", "",
              "Value [95 % CI] and verdict per rung (as in the demo report: **holds** when the whole interval lies "
              "on the paper's side of the threshold); the outcome over the ladder in the last column.", ""]
    columns = [(c, i) for c in cfg.corpora for i, _ in cfg.rungs_of(c)]
    lines.append("| claim | statistic | " + " | ".join(f"{c} rung {i}" for c, i in columns) + " | outcome |")
    lines.append("|---|---|" + "---|" * len(columns) + "---|")
    for key, claim in claims.items():
        cells = []
        for corpus, i in columns:
            hit = table[(table["claim"] == key) & (table["corpus"] == corpus) & (table["rung"] == i)]
            cells.append("–" if not len(hit) else
                         f"{_ci(hit.iloc[0]['value'], hit.iloc[0]['ci_low'], hit.iloc[0]['ci_high'])} "
                         f"{hit.iloc[0]['verdict']}")
        outcome = "; ".join(f"{r.corpus}: {r.outcome}" for r in trend[trend["claim"] == key].itertuples())
        lines.append(f"| {SHORT_TITLES.get(key, key)} | {claim.statistic} "
                     f"({claim.side} {claim.threshold:g}) | " + " | ".join(cells) + f" | {outcome} |")
    others = [k for k in claims if k not in FINDINGS and k in paths]
    lines += ["", *(["Figures of the other claims: " + ", ".join(f"[{k}]({paths[k]})" for k in others) + ".", ""]
                    if others else []),
              "Tables: `losses.csv` (one row per trained model), `ladder_seeds.csv` (each seed's statistic and "
              "bootstrap interval), `ladder.csv` (per rung, over seeds), `trends.csv` (bottom -> top).", ""]
    path = cfg.out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["write_report", "figures", "FINDINGS", "MIXERS"]
