"""Sweeps: held-out loss against block size S, and against depth at a fixed parameter count.

Input: tidy rows (one per trained model) with the x column, `loss`, optional `loss_low` / `loss_high` (a 95 %
interval over seeds) and a `series` column naming the line (mixer)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import base_layout, empty_figure, run_colour


def sweep_lines(frame: pd.DataFrame, x: str, x_title: str, title: str, log_x: bool = False,
                baseline: float | None = None, baseline_name: str = "residual") -> go.Figure:
    if frame is None or len(frame) == 0:
        return empty_figure("No sweep results.", title)
    fig = go.Figure()
    for i, (series, part) in enumerate(frame.groupby("series", sort=False)):
        part = part.sort_values(x)
        error = None
        if "loss_low" in part and part["loss_low"].notna().any():
            error = dict(type="data", symmetric=False, array=part["loss_high"] - part["loss"],
                         arrayminus=part["loss"] - part["loss_low"], thickness=1)
        fig.add_trace(go.Scatter(x=part[x], y=part["loss"], error_y=error, mode="lines+markers", name=str(series),
                                 line=dict(color=run_colour(i)),
                                 hovertemplate=f"{series}<br>{x_title} %{{x}}: loss %{{y:.4f}}<extra></extra>"))
    if baseline is not None:
        fig.add_hline(y=baseline, line=dict(color="#555", dash="dot"), annotation_text=baseline_name,
                      annotation_position="top left")
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear", tickvals=sorted(frame[x].unique()))
    fig.update_yaxes(title_text="final held-out loss (nats / byte)")
    return base_layout(fig, title, height=380)
