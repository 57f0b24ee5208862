"""Gradient uniformity across depth: activation- and parameter-gradient magnitudes per sublayer.

Quantities:
  grad_rms          per token: RMS over d_model of dLoss/dh_l (the gradient at the sublayer input), recorded
                    with `record --grads`; averaged over tokens per sublayer (streamed).
  param_grad_norm   per recorded batch (step): the L2 norm of the gradient of the sublayer's own parameters
                    (run.grad_norms); averaged over steps per sublayer.
  param_grad_rms    param_grad_norm / sqrt(n_params): per-parameter RMS, comparable between attention and MLP
                    sublayers of different size.

Uniformity of a per-sublayer profile g_1..g_L (the final mixer excluded), for all sublayers and for
pre-attention / pre-MLP separately:
  cv          population standard deviation / mean across sublayers (0 = perfectly uniform);
  max_min     max / min;
  early_late  mean of the first quarter of the sublayers (at least one) / mean of the last quarter
              (> 1: early layers get larger gradients, the baseline pattern the paper reports).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError
from depthscope.models import ATTN, FINAL, MLP, sublayer_kinds

from .runs import as_run, run_name
from .signal import signal_profile


def uniformity(values) -> dict:
    """cv, max_min, early_late and n of one profile across depth (module docstring)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return {"n": len(v), "cv": np.nan, "max_min": np.nan, "early_late": np.nan}
    edge = max(1, len(v) // 4)
    return {"n": len(v), "cv": float(v.std() / v.mean()), "max_min": float(v.max() / v.min()),
            "early_late": float(v[:edge].mean() / v[-edge:].mean())}


def param_grad_matrix(run, per_parameter: bool = False) -> pd.DataFrame:
    """Parameter-gradient norms as a [steps, sublayers] table (columns: sublayer ids, sublayers 1..L only)."""
    run = as_run(run)
    table = run.grad_norms
    if table.empty:
        raise AnalysisError(run_name(run), "no parameter-gradient norms in this run (record it with --grads)")
    table = table[table["label"] != FINAL].copy()
    if per_parameter:
        table["grad_norm"] = table["grad_norm"] / np.sqrt(np.maximum(table["n_params"].astype(float), 1.0))
    return table.pivot_table(index="step", columns="sublayer", values="grad_norm", aggfunc="mean").sort_index(axis=1)


def param_grad_profile(run) -> pd.DataFrame:
    """Per sublayer: mean and 25th / 75th percentile over steps of the parameter-gradient norm
    (sublayer, label, mean, lo, hi, steps). Empty when the run recorded none."""
    g = run.grad_norms if run.layout.grads else pd.DataFrame()
    if g is None or len(g) == 0:
        return pd.DataFrame(columns=["sublayer", "label", "mean", "lo", "hi", "steps"])
    per = g.groupby(["sublayer", "label"], sort=True)["grad_norm"]
    frame = pd.DataFrame({"mean": per.mean(), "lo": per.quantile(0.25), "hi": per.quantile(0.75),
                          "steps": per.count()}).reset_index()
    return frame.sort_values("sublayer").reset_index(drop=True)


def gradient_profile(run, chunk_tokens: int | None = None, grad_rms: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per sublayer: grad_rms (mean over tokens), param_grad_norm (mean and std over steps), param_grad_rms,
    n_params, steps; columns missing from the run are NaN. At least one of the two must be recorded.
    grad_rms: signal_profile(run, ("grad_rms",)) when a scan already made it."""
    run = as_run(run)
    labels = dict(zip(run.sublayers, run.sublayer_labels))
    out = pd.DataFrame({"sublayer": np.asarray(run.sublayers, dtype=np.int64), "sublayer_label": run.sublayer_labels,
                        "kind": sublayer_kinds(run.sublayer_labels)})
    have = False
    if "grad_rms" in run.captured and run.n_tokens:
        prof = signal_profile(run, ("grad_rms",), chunk_tokens) if grad_rms is None else grad_rms
        out = out.merge(prof[["sublayer", "mean"]].rename(columns={"mean": "grad_rms"}), on="sublayer", how="left")
        have = True
    else:
        out["grad_rms"] = np.nan
    table = run.grad_norms
    if not table.empty:
        g = table.groupby("sublayer")
        params = g["n_params"].first().astype(float)
        agg = pd.DataFrame({"param_grad_norm": g["grad_norm"].mean(), "param_grad_norm_std": g["grad_norm"].std(ddof=0),
                            "n_params": params, "steps": g["grad_norm"].count()})
        agg["param_grad_rms"] = agg["param_grad_norm"] / np.sqrt(np.maximum(params, 1.0))
        out = out.merge(agg.reset_index(), on="sublayer", how="left")
        have = True
    else:
        for c in ("param_grad_norm", "param_grad_norm_std", "n_params", "steps", "param_grad_rms"):
            out[c] = np.nan
    if not have:
        raise AnalysisError(run_name(run), "gradient uniformity needs grad_rms or parameter-gradient norms; "
                                           "record the run with --grads")
    out["sublayer_label"] = out["sublayer"].map(labels)
    return out


def gradient_uniformity(profile: pd.DataFrame) -> pd.DataFrame:
    """Per quantity (grad_rms, param_grad_norm, param_grad_rms) and sublayer set (all, attn, mlp): uniformity."""
    body = profile[profile["kind"].isin(["attn", "mlp"])].sort_values("sublayer")
    rows = []
    for q in ("grad_rms", "param_grad_norm", "param_grad_rms"):
        if q not in body or body[q].isna().all():
            continue
        for kind in ("all", ATTN, MLP):
            sel = body if kind == "all" else body[body["kind"] == kind]
            rows.append({"quantity": q, "kind": kind, **uniformity(sel[q].to_numpy())})
    return pd.DataFrame(rows, columns=["quantity", "kind", "n", "cv", "max_min", "early_late"])
