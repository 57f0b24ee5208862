"""Routing statistics plots over the tables of depthscope.analyses.routing: jump-distance histogram,
long-range mass (and embedding weight) per sublayer, depth sinks, and causal source ablation beside routing mass."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import base_layout, empty_figure, run_colour


def jump_histogram(jumps: pd.DataFrame, title: str = "Distance of each token's top source", k: float | None = None,
                   unit: str = "sublayers") -> go.Figure:
    """jumps: (kind, distance, count, is_jump) rows from analyses' Routing.jumps; one bar group per sublayer kind,
    distances beyond k (long-range jumps) marked by a dashed line."""
    if jumps is None or len(jumps) == 0:
        return empty_figure("No source distances in this run (e.g. Hyper-Connection streams).", title)
    fig = go.Figure()
    for i, (kind, part) in enumerate(jumps.groupby("kind", sort=False)):
        h = part.groupby("distance")["count"].sum()
        total = h.sum()
        fig.add_trace(go.Bar(x=h.index.to_numpy(), y=(h / max(total, 1)).to_numpy(), name=f"pre-{kind}" if kind != "final" else "final",
                             marker_color=run_colour(i),
                             hovertemplate="distance %{x}<br>share of tokens %{y:.3f}<extra></extra>"))
    if k is not None:
        fig.add_vline(x=k + 0.5, line=dict(color="#555", dash="dash"), annotation_text=f"jumps: > {k:g}",
                      annotation_position="top right")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=f"distance of the top source ({unit} back)", dtick=1)
    fig.update_yaxes(title_text="share of (token, sublayer)")
    base_layout(fig, title, height=380)
    return fig


def long_range_per_sublayer(sublayers: pd.DataFrame, title: str = "Long-range mass and embedding weight per sublayer",
                            k: float | None = None) -> go.Figure:
    """sublayers: analyses' Routing.sublayers (sublayer_label, long_range, embedding, locality, jump_rate)."""
    if sublayers is None or len(sublayers) == 0:
        return empty_figure("No routed sublayers.", title)
    fig = go.Figure()
    x = sublayers["sublayer_label"]
    for i, (col, name) in enumerate((("long_range", f"long-range mass (> {k:g} back)" if k is not None else "long-range mass"),
                                     ("embedding", "embedding weight"), ("locality", "locality"))):
        if col in sublayers and sublayers[col].notna().any():
            fig.add_trace(go.Bar(x=x, y=sublayers[col], name=name, marker_color=run_colour(i),
                                 hovertemplate="%{x}<br>" + name + " %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="consuming sublayer", type="category")
    fig.update_yaxes(title_text="mean share of weight", rangemode="tozero")
    base_layout(fig, title, height=400)
    return fig


def sinks(sources: pd.DataFrame, title: str = "Depth sinks: high weight regardless of the input") -> go.Figure:
    """sources: analyses' Routing.sources (sublayer_label, source_label, mean_share, std_share, is_sink).
    Each (sublayer, source) is a point: mean share against its coefficient of variation across tokens; sinks
    (high mean, low variation) are highlighted."""
    if sources is None or len(sources) == 0:
        return empty_figure("No sources.", title)
    s = sources.copy()
    s["cv"] = np.where(s["mean_share"] > 0, s["std_share"] / s["mean_share"].where(s["mean_share"] > 0), np.nan)
    fig = go.Figure()
    for flag, name, colour, size in ((False, "other sources", "#9aa5b1", 7), (True, "depth sinks", "#D55E00", 11)):
        part = s[s["is_sink"] == flag]
        if len(part):
            fig.add_trace(go.Scatter(
                x=part["cv"], y=part["mean_share"], mode="markers", name=name,
                marker=dict(color=colour, size=size, line=dict(width=0.5, color="#333")),
                text=part["sublayer_label"] + " ← " + part["source_label"],
                hovertemplate="%{text}<br>mean share %{y:.3f}<br>CV across tokens %{x:.2f}<extra></extra>"))
    fig.update_xaxes(title_text="coefficient of variation across tokens", rangemode="tozero")
    fig.update_yaxes(title_text="mean share of weight", rangemode="tozero")
    base_layout(fig, title, height=400)
    return fig


def ablation_vs_mass(frame: pd.DataFrame, title: str = "Causal source ablation beside routing mass") -> go.Figure:
    """frame: one row per (sublayer_label, source_label) with mean_share (routing mass) and delta_loss (loss
    increase when the source is removed). Scatter of the two, one point per source."""
    if frame is None or len(frame) == 0 or "delta_loss" not in frame:
        return empty_figure("No source-ablation table for this run yet.", title)
    fig = go.Figure(go.Scatter(
        x=frame["mean_share"], y=frame["delta_loss"], mode="markers",
        marker=dict(color="#0072B2", size=9, line=dict(width=0.5, color="#333")),
        text=frame["sublayer_label"].astype(str) + " ← " + frame["source_label"].astype(str),
        hovertemplate="%{text}<br>mean share %{x:.3f}<br>loss increase %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title_text="routing mass (mean share)")
    fig.update_yaxes(title_text="loss increase when ablated")
    base_layout(fig, title, height=400)
    return fig
