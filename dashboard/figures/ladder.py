"""A scale ladder: one statistic against model size, one line per corpus, with 95 % intervals and per-seed points.

Input: `table` with one row per (corpus, rung): params, value, ci_low, ci_high (depthscope.ladder.combine_seeds);
optional `seeds` with one row per seed: corpus, params, value (for a reset statistic, one row per boundary)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import base_layout, empty_figure, rgba, run_colour


def ladder_lines(table: pd.DataFrame, y_title: str, title: str, seeds: pd.DataFrame | None = None,
                 threshold: float | None = None, threshold_text: str = "") -> go.Figure:
    if table is None or len(table) == 0:
        return empty_figure("No ladder results.", title)
    fig = go.Figure()
    for i, (corpus, part) in enumerate(table.groupby("corpus", sort=False)):
        part = part.sort_values("params")
        colour = run_colour(i)
        if seeds is not None and len(seeds):
            own = seeds[seeds["corpus"] == corpus]
            fig.add_trace(go.Scatter(x=own["params"], y=own["value"], mode="markers", showlegend=False,
                                     marker=dict(color=rgba(colour, 0.45), size=5, symbol="circle-open"),
                                     hovertemplate=f"{corpus}, one seed<br>%{{x:,}} parameters: %{{y:.4g}}<extra></extra>"))
        error = dict(type="data", symmetric=False, array=part["ci_high"] - part["value"],
                     arrayminus=part["value"] - part["ci_low"], thickness=1.2, width=4, color=colour)
        fig.add_trace(go.Scatter(x=part["params"], y=part["value"], error_y=error, mode="lines+markers",
                                 name=str(corpus), line=dict(color=colour), marker=dict(size=7),
                                 hovertemplate=f"{corpus}<br>%{{x:,}} parameters: %{{y:.4g}}<extra></extra>"))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="#555", dash="dot"), annotation_text=threshold_text,
                      annotation_position="top left")
    fig.update_xaxes(title_text="parameters", type="log", tickvals=sorted(table["params"].unique()),
                     tickformat=".3~s")
    fig.update_yaxes(title_text=y_title)
    return base_layout(fig, title, height=340)
