"""Evolution over training: a routing statistic against the training step, one line per sublayer kind."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from depthscope.models import statistic_label

from .style import base_layout, empty_figure, run_colour


def statistic_over_steps(frame: pd.DataFrame, stat: str, step: int | None = None,
                         title: str | None = None) -> go.Figure:
    """frame: step, kind, <stat> (analyses' Routing.by_kind of each checkpoint run, stacked). The selected
    step is marked."""
    title = title or f"{statistic_label(stat)} over training"
    if frame is None or len(frame) == 0 or stat not in frame:
        return empty_figure("No checkpoint runs of one training here.", title)
    fig = go.Figure()
    for i, (kind, part) in enumerate(frame.groupby("kind", sort=False)):
        part = part.sort_values("step")
        fig.add_trace(go.Scatter(x=part["step"], y=part[stat], mode="lines+markers",
                                 name={"attn": "pre-attention", "mlp": "pre-MLP"}.get(kind, kind),
                                 line=dict(color=run_colour(i))))
    if step is not None:
        fig.add_vline(x=step, line=dict(color="#555", dash="dot"))
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text=statistic_label(stat))
    base_layout(fig, title, height=340)
    return fig
