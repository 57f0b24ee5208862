"""Per-token figures: the text coloured by a per-token statistic, a token x sublayer heatmap over a window,
and one token's norm profile (its own sublayer x source heatmap is `routing.routing_heatmap`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from depthscope.models import statistic_label

from .style import (
    QUANTITY_DASH,
    QUANTITY_NAMES,
    SEQUENTIAL,
    base_layout,
    empty_figure,
    run_colour,
)

LINE_WIDTH = 64  # characters per line of the coloured text


def text_grid(frame: pd.DataFrame, stat: str, width: int = LINE_WIDTH):
    """Lay tokens out as text: (values [lines, width], chars [lines, width], token index [lines, width]).

    A new line starts after a newline token or after `width` tokens; empty cells are NaN / "" / -1."""
    values, chars, index = [[]], [[]], [[]]
    stat_values = frame[stat].to_numpy(dtype=float) if stat in frame else np.full(len(frame), np.nan)
    for i, ch, v in zip(frame["index"].to_numpy(), frame["char"].tolist(), stat_values):
        if len(values[-1]) >= width:
            values.append([]), chars.append([]), index.append([])
        values[-1].append(v)
        chars[-1].append("⏎" if ch == "\\n" else ("·" if ch == " " else ch))
        index[-1].append(int(i))
        if ch == "\\n":
            values.append([]), chars.append([]), index.append([])
    if not values[-1] and len(values) > 1:
        values.pop(), chars.pop(), index.pop()
    n = len(values)
    z = np.full((n, width), np.nan)
    c = np.full((n, width), "", dtype=object)
    ix = np.full((n, width), -1, dtype=np.int64)
    for r in range(n):
        k = len(values[r])
        z[r, :k], c[r, :k], ix[r, :k] = values[r], chars[r], index[r]
    return z, c, ix


def token_text(frame: pd.DataFrame, stat: str, title: str = "", width: int = LINE_WIDTH,
               zmin: float | None = None, zmax: float | None = None) -> go.Figure:
    """The text of a window coloured by per-token `stat` (a column of `frame`: index, char, stat).
    Clicking a character yields customdata = its token index."""
    if frame is None or len(frame) == 0:
        return empty_figure("No tokens in this window.", title)
    if stat not in frame:
        return empty_figure(f"This run has no {statistic_label(stat)} per token.", title)
    z, chars, index = text_grid(frame, stat, width)
    finite = z[np.isfinite(z)]
    fig = go.Figure(go.Heatmap(
        z=z, text=chars, texttemplate="%{text}", textfont=dict(family="DejaVu Sans Mono, monospace", size=12),
        customdata=index, colorscale=SEQUENTIAL, xgap=1, ygap=2,
        zmin=zmin if zmin is not None else (float(finite.min()) if finite.size else 0),
        zmax=zmax if zmax is not None else (float(finite.max()) if finite.size else 1),
        colorbar=dict(title=dict(text=statistic_label(stat), side="right"), thickness=12),
        hovertemplate="token %{customdata}: '%{text}'<br>" + statistic_label(stat) + " %{z:.4f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", visible=False)
    fig.update_xaxes(visible=False)
    base_layout(fig, title, height=int(min(900, 110 + 24 * z.shape[0])))
    return fig


def token_heatmap(values: np.ndarray, slot_labels: list[str], index: np.ndarray, chars: list[str], stat: str,
                  title: str = "") -> go.Figure:
    """Token (x, in text order) x sublayer (y) heatmap of a per-token statistic over a window.
    values: [tokens, slots]. Clicking yields customdata = token index."""
    if values.size == 0:
        return empty_figure("No tokens in this window.", title)
    z = values.T  # [slots, tokens]
    ticks = [f"{c}" for c in chars]
    custom = np.broadcast_to(index[None, :], z.shape)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(index))), y=slot_labels, customdata=custom, colorscale=SEQUENTIAL,
        colorbar=dict(title=dict(text=statistic_label(stat), side="right"), thickness=12),
        hovertemplate="token %{customdata}<br>sublayer %{y}<br>" + statistic_label(stat)
                      + " %{z:.4f}<extra></extra>",
    ))
    step = max(1, len(index) // 64)
    fig.update_xaxes(tickmode="array", tickvals=list(range(0, len(index), step)), ticktext=ticks[::step],
                     title_text=f"token (index {int(index[0])}..{int(index[-1])})", tickangle=0)
    fig.update_yaxes(autorange="reversed", title_text="sublayer", type="category")
    base_layout(fig, title, height=int(min(800, max(300, 140 + 18 * len(slot_labels)))))
    return fig


def norm_profile(frame: pd.DataFrame, title: str = "") -> go.Figure:
    """One token's RMS quantities against depth (frame: label, quantity, value), log scale."""
    if frame is None or len(frame) == 0:
        return empty_figure("This run recorded no hidden-state norms.", title)
    fig = go.Figure()
    for i, (quantity, part) in enumerate(frame.groupby("quantity", sort=False)):
        fig.add_trace(go.Scatter(x=part["label"], y=part["value"], mode="lines+markers",
                                 name=QUANTITY_NAMES.get(quantity, quantity),
                                 line=dict(color=run_colour(i), dash=QUANTITY_DASH.get(quantity, "solid"))))
    fig.update_yaxes(type="log", title_text="RMS", tickformat=".2~g")
    fig.update_xaxes(title_text="sublayer", type="category")
    base_layout(fig, title, height=340)
    return fig
