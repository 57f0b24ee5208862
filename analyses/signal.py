"""Signal growth: RMS of hidden states against depth, streamed over a run's chunks.

Quantities (recorded per token and sublayer by the probe, RMS over d_model):
  input_rms     the sublayer input h_l. For the residual baseline h_l = x_{l-1}, the residual stream, so this
                is the "hidden state" of both methods; for AttnRes it is the depth-attention mix.
  output_rms    the sublayer output f_l(h_l).
  residual_rms  the residual stream x_l after sublayer l (baseline, DenseFormer).

`signal_profile(run)`: per sublayer and quantity, over tokens: mean, std, p10, p50, p90 (percentiles from a
log-spaced histogram: log_histogram.py) and geo_mean (exp of the mean log RMS). Tokens with NaN (no tap
fired) are skipped. `signal_reducers` / `signal_frame` are the same as steps of a scan shared with others.

`signal_growth(profile)`: per quantity, over the sublayers 1..L (the final mixer excluded), for all sublayers
and for pre-attention / pre-MLP separately: first and last mean RMS, last_first = last / first, max_min,
log_slope = OLS slope of log(mean RMS) against the sublayer index (growth factor exp(slope) per sublayer),
monotone_share = share of consecutive sublayers whose mean RMS increases.

`signal_vs_baseline(profile, baseline_profile)`: ratio of mean RMS at each (sublayer, quantity).

`block_resets(profile, bounds)`: Block AttnRes: per block, the mean RMS at its first and last sublayer,
within = last / first, and boundary = first / (last of the previous block); a **reset** is boundary < 1
(the quantity drops when a new block starts), the saw-tooth the paper reports.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError
from depthscope.models import ATTN, FINAL, MLP, PARTIAL, sublayer_kinds

from .log_histogram import Moments, MomentsReducer
from .runs import as_run, mixer_kind, model_config, require, run_name
from .scanner import scan

QUANTITIES = ("input_rms", "output_rms", "residual_rms")
PERCENTILES = (10, 50, 90)


def signal_reducers(run, quantities=QUANTITIES) -> dict[str, MomentsReducer]:
    """The scan reducers of signal_profile: one per quantity the run captured (AnalysisError if none)."""
    present = [q for q in quantities if q in run.captured]
    if not present:
        raise AnalysisError(run_name(run), f"signal growth needs one of {list(quantities)}, which this run did not "
                                           f"capture (it holds {list(run.captured) or 'nothing'})")
    require(run, present, "signal growth")
    return {q: MomentsReducer(q, len(run.sublayers)) for q in present}


def signal_frame(run, moments: dict[str, Moments]) -> pd.DataFrame:
    """The signal_profile table from each quantity's Moments (log_histogram.py)."""
    kinds = sublayer_kinds(run.sublayer_labels)
    frames = []
    for q, m in moments.items():
        frame = pd.DataFrame({
            "sublayer": np.asarray(run.sublayers, dtype=np.int64), "sublayer_label": run.sublayer_labels,
            "kind": kinds, "quantity": q, "tokens": m.count.astype(np.int64), "mean": m.mean, "std": m.std,
        })
        for p in PERCENTILES:
            frame[f"p{p}"] = m.percentile(p)
        frame["geo_mean"] = m.geo_mean
        frames.append(frame[m.count > 0])
    return pd.concat(frames, ignore_index=True)


def signal_profile(run, quantities=QUANTITIES, chunk_tokens: int | None = None) -> pd.DataFrame:
    """Per sublayer and quantity: tokens, mean, std, p10, p50, p90, geo_mean (module docstring); one scan."""
    run = as_run(run)
    results = scan(run, signal_reducers(run, quantities), chunk_tokens)
    return signal_frame(run, {q: results[q] for q in results})


def growth_of(sublayers: np.ndarray, values: np.ndarray) -> dict:
    """Growth statistics of one series of mean RMS against sublayer index (module docstring)."""
    ok = np.isfinite(values) & (values > 0)
    x, y = np.asarray(sublayers, dtype=float)[ok], np.asarray(values, dtype=float)[ok]
    if len(y) < 2:
        return {"n": len(y), "first": np.nan, "last": np.nan, "last_first": np.nan, "max_min": np.nan,
                "log_slope": np.nan, "monotone_share": np.nan}
    slope = float(np.polyfit(x, np.log(y), 1)[0])
    return {"n": len(y), "first": y[0], "last": y[-1], "last_first": y[-1] / y[0], "max_min": y.max() / y.min(),
            "log_slope": slope, "monotone_share": float(np.mean(np.diff(y) > 0))}


def signal_growth(profile: pd.DataFrame, statistic: str = "mean") -> pd.DataFrame:
    """Per quantity and sublayer set (all, attn, mlp): growth statistics of `statistic` against depth."""
    rows = []
    body = profile[profile["kind"].isin(["attn", "mlp"])]
    for q, part in body.groupby("quantity", sort=False):
        for kind in ("all", ATTN, MLP):
            sel = part if kind == "all" else part[part["kind"] == kind]
            sel = sel.sort_values("sublayer")
            rows.append({"quantity": q, "kind": kind, **growth_of(sel["sublayer"].to_numpy(), sel[statistic].to_numpy())})
    return pd.DataFrame(rows)


def signal_vs_baseline(profile: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Per (sublayer, quantity) both runs share: mean, baseline_mean and ratio = mean / baseline_mean."""
    merged = profile[["sublayer", "sublayer_label", "kind", "quantity", "mean"]].merge(
        baseline[["sublayer", "quantity", "mean"]].rename(columns={"mean": "baseline_mean"}),
        on=["sublayer", "quantity"], how="inner")
    if merged.empty:
        raise AnalysisError("signal_vs_baseline", "the two runs share no (sublayer, quantity) to compare")
    merged["ratio"] = merged["mean"] / merged["baseline_mean"]
    return merged


def block_bounds_of(run) -> list[tuple[int, int]] | None:
    """(first, last) sublayer of every Block AttnRes block: from the model config, else from the source labels
    (a block's first sublayer is the one without a `partial` source)."""
    cfg = model_config(run)
    if cfg and "n_blocks" in mixer_kind(run).options:
        from depthscope.models import ModelConfig

        return ModelConfig.from_dict(cfg).block_bounds
    labels = run.source_labels
    if not any(PARTIAL in s for s in labels):
        return None
    firsts = [l for l, s in zip(run.sublayers, labels) if s and PARTIAL not in s and l <= max(run.sublayers)]
    body = [l for l, lab in zip(run.sublayers, run.sublayer_labels) if lab != FINAL]
    firsts = [f for f in firsts if f in body]
    return [(f, (firsts[i + 1] - 1) if i + 1 < len(firsts) else max(body)) for i, f in enumerate(firsts)]


def block_resets(profile: pd.DataFrame, bounds: list[tuple[int, int]], quantity: str = "input_rms",
                 statistic: str = "mean") -> pd.DataFrame:
    """Per block: first/last RMS, within = last / first, boundary = first / previous block's last, reset."""
    series = profile[profile["quantity"] == quantity].set_index("sublayer")[statistic]
    rows, previous = [], np.nan
    for n, (first, last) in enumerate(bounds, start=1):
        a, b = series.get(first, np.nan), series.get(last, np.nan)
        boundary = a / previous if np.isfinite(previous) else np.nan
        rows.append({"block": n, "first_sublayer": first, "last_sublayer": last, "quantity": quantity,
                     "first": a, "last": b, "within": b / a, "boundary": boundary,
                     "reset": bool(boundary < 1) if np.isfinite(boundary) else None})
        previous = b
    return pd.DataFrame(rows)
