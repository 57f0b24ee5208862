"""The Markdown summary of an analysis: headline numbers with CIs, and whether each paper finding holds.

Verdicts compare a 95 % bootstrap CI (comparison.py) with a threshold: **holds** when the whole CI lies on the
claimed side, **does not hold** when it lies wholly on the other side, **inconclusive** otherwise. Thresholds:
  growth          log-slope of mean input RMS against depth > 0 (the baseline's hidden state grows)
  bounded         run's last/first input-RMS ratio minus the baseline's < 0
  uniform grads   run's CV of per-sublayer gradient magnitude minus the baseline's < 0
  locality        locality_excess > 0 (more weight on the nearest source than uniform weights give)
  embedding       embedding share > EMBEDDING_MIN = 0.05
  jumps           jump_rate > JUMP_MIN = 0.01 (top source a non-embedding source more than k back)
  attn vs mlp     embedding_attn - embedding_mlp > 0; norm_entropy_mlp - norm_entropy_attn < 0
  loss            run's loss minus the baseline's < 0 (one seed each: a small, noisy difference)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from depthscope.models import ATTNRES, BASELINE, kind_of_model

EMBEDDING_MIN = 0.05
JUMP_MIN = 0.01

HEADLINE = [
    ("loss", "mean next-token loss"),
    ("input_rms_last_first", "hidden state (sublayer input) RMS, last / first sublayer"),
    ("input_rms_log_slope", "slope of log input RMS per sublayer"),
    ("input_rms_last_first3", "hidden state RMS, last / sublayer 3 (after the first block)"),
    ("input_rms_log_slope3", "slope of log input RMS per sublayer, sublayers 3..L"),
    ("output_rms_last_first", "sublayer output RMS, last / first"),
    ("output_rms_log_slope", "slope of log output RMS per sublayer"),
    ("grad_rms_cv", "CV across sublayers of dLoss/dh RMS"),
    ("grad_rms_early_late", "dLoss/dh RMS, first quarter / last quarter"),
    ("param_grad_cv", "CV across sublayers of parameter-gradient norm (per step)"),
    ("param_grad_rms_cv", "CV of parameter-gradient RMS per parameter"),
    ("param_grad_early_late", "parameter-gradient norm, first / last quarter"),
    ("locality", "weight on the nearest source"),
    ("locality_excess", "locality minus its uniform-weight value"),
    ("embedding", "weight on the embedding"),
    ("embedding_attn", "embedding weight, pre-attention"),
    ("embedding_mlp", "embedding weight, pre-MLP"),
    ("long_range", "weight on non-embedding sources more than k back"),
    ("jump_rate", "share of (token, sublayer) whose top source is > k back"),
    ("norm_entropy_attn", "normalised entropy, pre-attention"),
    ("norm_entropy_mlp", "normalised entropy, pre-MLP"),
]


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if abs(x) >= 1000 or (0 < abs(x) < 1e-3):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def _p(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2g}"


def _ci(row) -> str:
    if row is None:
        return "–"
    return f"{_fmt(row['value'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def verdict(low: float, high: float, threshold: float, side: str, tol: float = 1e-6) -> str:
    """'holds' / 'does not hold' / 'inconclusive' for a claim `value side threshold` given a CI; a CI within
    `tol` of the threshold (float rounding) does not count as clearing it."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive (no CI)"
    if side == ">":
        return "holds" if low > threshold + tol else ("does not hold" if high <= threshold + tol else "inconclusive")
    return "holds" if high < threshold - tol else ("does not hold" if low >= threshold - tol else "inconclusive")


class _Lookup:
    def __init__(self, analysis):
        est = analysis.tables.get("estimates", pd.DataFrame(columns=["run", "statistic"]))
        self.est = {(r["run"], r["statistic"]): r for _, r in est.iterrows()}
        cmp = analysis.tables.get("compare", pd.DataFrame(columns=["statistic"]))
        self.cmp = {r["statistic"]: r for _, r in cmp.iterrows()}

    def e(self, run, name):
        return self.est.get((run, name))

    def c(self, name):
        return self.cmp.get(name)


@dataclass(frozen=True)
class Claim:
    """One of the paper's findings as a test on one statistic: `statistic side threshold`.

    scope: "residual" (an estimate on the baseline run), "attnres" (an estimate on the AttnRes run) or "diff"
    (the AttnRes run minus the baseline, from the compare table; threshold 0). `text` may name {kind}, the
    AttnRes run's model kind."""
    key: str
    statistic: str
    scope: str
    threshold: float
    side: str
    text: str


CLAIMS: dict[str, Claim] = {c.key: c for c in (
    Claim("growth", "input_rms_log_slope", "residual", 0.0, ">", "Baseline hidden-state RMS grows with depth"),
    Claim("growth3", "input_rms_log_slope3", "residual", 0.0, ">",
          "... and still grows after the first transformer block (sublayers 3..L)"),
    Claim("attnres_growth", "input_rms_log_slope", "attnres", 0.0, ">",
          "Hidden-state RMS grows with depth in {kind} too (the paper: bounded)"),
    Claim("bounded", "input_rms_last_first", "diff", 0.0, "<",
          "This run's hidden-state RMS grows less than the baseline's (last/first ratio lower)"),
    Claim("bounded3", "input_rms_log_slope3", "diff", 0.0, "<",
          "... also after the first transformer block (log-slope over sublayers 3..L lower)"),
    Claim("output_bounded", "output_rms_last_first", "diff", 0.0, "<",
          "This run's sublayer-output RMS grows less than the baseline's"),
    Claim("uniform_grads", "grad_rms_cv", "diff", 0.0, "<",
          "Activation gradients are more uniform across depth than the baseline's (lower CV)"),
    Claim("uniform_param_grads", "param_grad_cv", "diff", 0.0, "<",
          "Parameter gradients are more uniform across depth than the baseline's (lower CV)"),
    Claim("locality", "locality_excess", "attnres", 0.0, ">", "Locality is preserved"),
    Claim("embedding", "embedding", "attnres", EMBEDDING_MIN, ">", "The embedding keeps non-trivial weight"),
    Claim("embedding_attn_mlp", "embedding_attn_minus_mlp", "attnres", 0.0, ">",
          "Pre-attention inputs put more weight on the embedding than pre-MLP inputs"),
    Claim("sharper_mlp", "norm_entropy_mlp_minus_attn", "attnres", 0.0, "<",
          "Pre-MLP inputs route more sharply (lower normalised entropy) than pre-attention"),
    Claim("jumps", "jump_rate", "attnres", JUMP_MIN, ">", "Long-range jumps are present"),
    Claim("loss", "loss", "diff", 0.0, "<", "This run's loss is lower than the baseline's (single seed)"),
)}


def _claim_one(look, run, claim: Claim, kind: str = ""):
    name, threshold, side, text = claim.statistic, claim.threshold, claim.side, claim.text.format(kind=kind)
    row = look.e(run, name)
    if row is None:
        return f"- {text}: not measurable here ({name} unavailable)."
    v = verdict(row["ci_low"], row["ci_high"], threshold, side)
    return f"- {text}: **{v}** — {name} = {_ci(row)} (threshold {side} {threshold}; run {run})."


def _claim_diff(look, claim: Claim):
    name, side, text = claim.statistic, claim.side, claim.text
    row = look.c(name)
    if row is None:
        return f"- {text}: not measurable here ({name} unavailable in both runs)."
    v = verdict(row["ci_low"], row["ci_high"], 0.0, side)
    return (f"- {text}: **{v}** — {name}: {_fmt(row['value_a'])} vs baseline {_fmt(row['value_b'])}, difference "
            f"{_fmt(row['diff'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}], Welch t = {_fmt(row['welch_t'], 2)}, "
            f"p = {_p(row['p_value'])}.")


def summary_markdown(analysis) -> str:
    look = _Lookup(analysis)
    base = analysis.baseline
    t = analysis.tables
    lines = [f"# depthscope analysis: {analysis.name} ({analysis.kind})"
             + (f" vs {base.name} ({base.kind})" if base else ""), ""]
    sums = analysis.sums
    routing = t.get("routing")
    lines.append(f"- tokens: {analysis.run.n_tokens:,}" + (f"; baseline: {base.run.n_tokens:,}" if base else ""))
    if sums is not None:
        lines.append(f"- confidence intervals: 95 % percentile bootstrap over {sums.n_groups} {sums.unit} "
                     f"(resampled groups)" + (f"; baseline: {base.sums.n_groups} {base.sums.unit}" if base and base.sums else "")
                     + "; parameter-gradient statistics resample recorded steps")
    if routing is not None and analysis.window is not None:
        k, unit = analysis.window
        lines.append(f"- long-range window k = {k:g} {unit} (sources more than k back; definitions in "
                     "depthscope.analyses.routing); the embedding is excluded from long-range mass and jumps and "
                     "reported on its own (embedding weight)")
    lines.append("")
    lines += ["## Headline numbers", "",
              "Norms: RMS over d_model. Hidden state = the sublayer input h_l (for the residual baseline "
              "h_l = x_{l-1}, the residual stream); output = f_l(h_l). Activation gradient grad_rms = RMS of "
              "dLoss/dh_l per token; parameter gradient = L2 norm of each sublayer's parameter gradient per "
              "recorded batch. Last/first and slopes run over sublayers 1..L.", "", "| statistic | meaning | this run | baseline | difference [95 % CI] | p |",
              "|---|---|---|---|---|---|"]
    for name, meaning in HEADLINE:
        a = look.e(analysis.name, name)
        b = look.e(base.name, name) if base else None
        c = look.c(name)
        if a is None and b is None:
            continue
        diff = f"{_fmt(c['diff'])} [{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" if c is not None else "–"
        p = _p(c["p_value"]) if c is not None else "–"
        lines.append(f"| {name} | {meaning} | {_ci(a)} | {_ci(b)} | {diff} | {p} |")
    lines.append("")

    lines += ["## The paper's findings at this scale", ""]
    runs = [analysis] + ([base] if base else [])
    residual = next((r for r in runs if kind_of_model({"kind": r.kind}).family == BASELINE), None)
    attnres = next((r for r in runs if kind_of_model({"kind": r.kind}).family == ATTNRES), None)
    if residual is not None:
        lines.append(_claim_one(look, residual.name, CLAIMS["growth"]))
        lines.append(_claim_one(look, residual.name, CLAIMS["growth3"]))
    if attnres is not None:
        lines.append(_claim_one(look, attnres.name, CLAIMS["attnres_growth"], attnres.kind))
    if base is not None:
        lines += [_claim_diff(look, CLAIMS[key]) for key in ("bounded", "bounded3", "output_bounded")]
    resets = t.get("block_resets")
    if resets is not None:
        part = resets[(resets["quantity"] == "input_rms") & resets["reset"].notna()]
        if len(part):
            lines.append(f"- Block AttnRes resets at block boundaries (input RMS drops when a block starts): "
                         f"{int(part['reset'].astype(bool).sum())} of {len(part)} boundaries; within-block growth "
                         f"last/first {_fmt(part['within'].mean())} on average (table block_resets).")
    if base is not None:
        lines += [_claim_diff(look, CLAIMS[key]) for key in ("uniform_grads", "uniform_param_grads")]
    if attnres is not None:
        n = attnres.name
        lines += [_claim_one(look, n, CLAIMS[key])
                  for key in ("locality", "embedding", "embedding_attn_mlp", "sharper_mlp", "jumps")]
        src = attnres.tables.get("routing_sources") if attnres is not analysis else t.get("routing_sources")
        if src is not None:
            sinks = src[src["is_sink"]]
            lines.append(f"- Depth sinks (high mean share, low variance across tokens; criteria in analyses.routing): "
                         f"{len(sinks)} (sublayer, source) pairs"
                         + (f", e.g. {', '.join((sinks['sublayer_label'] + '<-' + sinks['source_label']).head(6))}"
                            if len(sinks) else "") + ".")
    if base is not None:
        lines.append(_claim_diff(look, CLAIMS["loss"]))
    lines.append("")

    ranks = [(r.name, r.tables.get("mixing_rank") if r is analysis else t.get("baseline_mixing_rank")) for r in runs]
    ranks = [(n, f) for n, f in ranks if f is not None]
    if ranks:
        lines += ["## Effective mixing matrix", "", "| run | kind | effective rank | numerical rank | "
                  "effective rank (row-normalised) |", "|---|---|---|---|---|"]
        for n, f in ranks:
            r = f.iloc[0]
            lines.append(f"| {n} | {r['kind']} | {_fmt(r['effective_rank'], 2)} | {int(r['rank'])} | "
                         f"{_fmt(r['effective_rank_normalised'], 2)} |")
        lines.append("")
    causal = t.get("causal_summary")
    if causal is not None:
        lines += ["## Causal check (source ablation at inference)", "",
                  "| family | n | Spearman rho (mass vs delta loss) | p | mean mass | mean delta loss |",
                  "|---|---|---|---|---|---|"]
        for _, r in causal.iterrows():
            lines.append(f"| {r['family']} | {r['n']} | {_fmt(r['spearman_rho'], 2)} | {_p(r['p_value'])} | "
                         f"{_fmt(r['mean_mass'])} | {_fmt(r['mean_delta_loss'], 4)} |")
        lines.append("")
    notes = analysis.notes + ([f"baseline {n}" for n in base.notes] if base else [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines.append("Tables: " + ", ".join(sorted(t)) + " (Parquet and CSV beside this file).")
    return "\n".join(lines) + "\n"
