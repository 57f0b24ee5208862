"""Gradient magnitude against depth (per-sublayer parameter-gradient norms, or activation-gradient RMS), and
gradient uniformity across the checkpoints of one training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import base_layout, empty_figure, run_colour


def gradients_vs_depth(frames: dict[str, pd.DataFrame], uniformity: dict[str, dict] | None = None,
                       baseline: str | None = None, title: str = "Gradient norm per sublayer",
                       ylabel: str = "parameter-gradient norm") -> go.Figure:
    """frames: run name -> (label, mean[, lo, hi]) per sublayer; drawn on a log scale with lo..hi as error band.
    uniformity: run name -> {"cv": .., "max_min": ..} shown in the legend."""
    frames = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not frames:
        return empty_figure("No gradients recorded in these runs (record with --grads).", title)
    fig = go.Figure()
    order = []
    for f in frames.values():
        order += [l for l in f["label"] if l not in order]
    for i, (name, f) in enumerate(frames.items()):
        colour = run_colour(i)
        u = (uniformity or {}).get(name) or {}
        extra = ""
        if u:
            extra = f"  (CV {u.get('cv', np.nan):.2f}, max/min {u.get('max_min', np.nan):.1f})"
        err = None
        if "lo" in f and "hi" in f and f["lo"].notna().any():
            err = dict(type="data", symmetric=False, array=(f["hi"] - f["mean"]).clip(lower=0),
                       arrayminus=(f["mean"] - f["lo"]).clip(lower=0), color=colour, thickness=1, width=3)
        fig.add_trace(go.Scatter(x=f["label"], y=f["mean"], error_y=err, mode="lines+markers",
                                 name=name + (" (baseline)" if name == baseline else "") + extra,
                                 line=dict(color=colour, width=2.5, dash="dash" if name == baseline else "solid"),
                                 hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(type="log", title_text=ylabel, tickformat=".2~g")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, title_text="sublayer")
    base_layout(fig, title, height=440)
    fig.update_layout(legend=dict(orientation="h", y=-0.25, x=0))
    return fig


def uniformity_over_steps(frame: pd.DataFrame, title: str = "Gradient uniformity across checkpoints") -> go.Figure:
    """frame: training, step, cv, max_min (one row per checkpoint run): CV against training step per training."""
    if frame is None or len(frame) == 0:
        return empty_figure("No training left several recorded checkpoints here.", title)
    fig = go.Figure()
    for i, (training, part) in enumerate(frame.groupby("training", sort=False)):
        part = part.sort_values("step")
        fig.add_trace(go.Scatter(x=part["step"], y=part["cv"], mode="lines+markers", name=str(training)[-40:],
                                 line=dict(color=run_colour(i)),
                                 customdata=part[["max_min"]].to_numpy(),
                                 hovertemplate="step %{x}<br>CV %{y:.3f}<br>max/min %{customdata[0]:.2f}<extra></extra>"))
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="coefficient of variation across sublayers", rangemode="tozero")
    base_layout(fig, title, height=360)
    return fig
