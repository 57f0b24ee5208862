"""Signal growth: RMS of hidden states against depth, streamed over a run's chunks.

Quantities (recorded per token and sublayer by the probe, RMS over d_model):
  input_rms     the sublayer input h_l. For the residual baseline h_l = x_{l-1}, the residual stream, so this
                is the "hidden state" of both methods; for AttnRes it is the depth-attention mix.
  output_rms    the sublayer output f_l(h_l).
  residual_rms  the residual stream x_l after sublayer l (baseline, DenseFormer).

`signal_profile(run)`: per sublayer and quantity, over tokens: mean, std, p10, p50, p90 (percentiles from a
log-spaced histogram of 100 bins per decade over 1e-8 .. 1e8: about 2.3 % resolution) and geo_mean
(exp of the mean log RMS). Tokens with NaN (no tap fired) are skipped.

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
import torch

from .errors import AnalysisError
from .runs import as_run, iter_chunks, model_config, require, run_name, sublayer_kinds

QUANTITIES = ("input_rms", "output_rms", "residual_rms")
LOG10_LOW, LOG10_HIGH, BINS_PER_DECADE = -8.0, 8.0, 100
PERCENTILES = (10, 50, 90)


class MomentsHistogram:
    """Per-slot count, sum, sum of squares, sum of logs and a log10 histogram of positive values [T, n]."""

    def __init__(self, n: int):
        self.n = n
        self.bins = int((LOG10_HIGH - LOG10_LOW) * BINS_PER_DECADE)
        self.count = torch.zeros(n, dtype=torch.float64)
        self.sum = torch.zeros(n, dtype=torch.float64)
        self.sq = torch.zeros(n, dtype=torch.float64)
        self.log = torch.zeros(n, dtype=torch.float64)
        self.hist = torch.zeros(n * self.bins, dtype=torch.float64)

    def update(self, x) -> None:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))  # [T, n]
        ok = torch.isfinite(x) & (x > 0)
        z = torch.where(ok, x, torch.ones(()))
        x64 = torch.where(ok, x, torch.zeros(())).double()
        self.count += ok.sum(0, dtype=torch.float64)
        self.sum += x64.sum(0)
        self.sq += (x64 * x64).sum(0)
        lg = torch.log10(z)
        self.log += torch.where(ok, lg, torch.zeros(())).sum(0, dtype=torch.float64) * np.log(10.0)
        idx = ((lg - LOG10_LOW) * BINS_PER_DECADE).floor().clamp(0, self.bins - 1).long()
        flat = (torch.arange(self.n) * self.bins + idx)[ok]
        self.hist += torch.bincount(flat, minlength=self.n * self.bins).double()

    def percentile(self, q: float) -> np.ndarray:
        hist = self.hist.view(self.n, self.bins).numpy()
        cum = np.cumsum(hist, axis=1)
        out = np.full(self.n, np.nan)
        for i in range(self.n):
            total = cum[i, -1]
            if total <= 0:
                continue
            target = q / 100.0 * total
            b = int(np.searchsorted(cum[i], target, side="left"))
            below = cum[i, b - 1] if b > 0 else 0.0
            frac = (target - below) / max(hist[i, b], 1e-300)
            out[i] = 10 ** (LOG10_LOW + (b + min(max(frac, 0.0), 1.0)) / BINS_PER_DECADE)
        return out


def signal_profile(run, quantities=QUANTITIES, chunk_tokens: int | None = None) -> pd.DataFrame:
    """Per sublayer and quantity: tokens, mean, std, p10, p50, p90, geo_mean (module docstring)."""
    run = as_run(run)
    present = [q for q in quantities if q in run.captured]
    if not present:
        raise AnalysisError(run_name(run), f"signal growth needs one of {list(quantities)}, which this run did not "
                                           f"capture (it holds {list(run.captured) or 'nothing'})")
    require(run, present, "signal growth")
    n = len(run.sublayers)
    acc = {q: MomentsHistogram(n) for q in present}
    for chunk in iter_chunks(run, present, chunk_tokens):
        for q in present:
            acc[q].update(chunk[q])
    kinds = sublayer_kinds(run.sublayer_labels)
    frames = []
    for q, m in acc.items():
        count = m.count.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = m.sum.numpy() / count
            std = np.sqrt(np.maximum(m.sq.numpy() / count - mean**2, 0.0))
            geo = np.exp(m.log.numpy() / count)
        frame = pd.DataFrame({
            "sublayer": np.asarray(run.sublayers, dtype=np.int64), "sublayer_label": run.sublayer_labels,
            "kind": kinds, "quantity": q, "tokens": count.astype(np.int64), "mean": mean, "std": std,
        })
        for p in PERCENTILES:
            frame[f"p{p}"] = m.percentile(p)
        frame["geo_mean"] = geo
        frames.append(frame[count > 0])
    return pd.concat(frames, ignore_index=True)


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
        for kind in ("all", "attn", "mlp"):
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
    if cfg and cfg.get("mixer") == "block_attnres":
        from depthscope.models.config import ModelConfig

        return ModelConfig.from_dict(cfg).block_bounds
    labels = run.source_labels
    if not any("partial" in s for s in labels):
        return None
    firsts = [l for l, s in zip(run.sublayers, labels) if s and "partial" not in s and l <= max(run.sublayers)]
    body = [l for l, lab in zip(run.sublayers, run.sublayer_labels) if lab != "final"]
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
