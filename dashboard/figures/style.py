"""One look for the app, notebooks and exported figures: fonts, colour-blind-safe scales, run colours."""
from __future__ import annotations

import plotly.graph_objects as go

FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
FONT_SIZE = 13
# Sequential: cividis (perceptually uniform, readable with colour-vision deficiencies).
SEQUENTIAL = "Cividis"
# Diverging blue - white - orange (differences; symmetric around 0).
DIVERGING = [[0.0, "#0b4f9c"], [0.25, "#6aa6d8"], [0.5, "#f7f7f7"], [0.75, "#f5a05a"], [1.0, "#b34700"]]
# Okabe-Ito palette for runs (first: the run, second: its baseline, ...).
RUN_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
QUANTITY_DASH = {"input_rms": "solid", "output_rms": "dash", "residual_rms": "dot", "grad_rms": "dashdot"}
QUANTITY_NAMES = {
    "input_rms": "RMS of sublayer input h_l",
    "output_rms": "RMS of sublayer output f_l",
    "residual_rms": "RMS of residual stream x_l",
    "grad_rms": "RMS of dLoss/dh_l",
}
STAT_NAMES = {
    "long_range": "long-range mass",
    "embedding": "embedding weight",
    "norm_entropy": "normalised entropy",
    "locality": "locality (nearest-source weight)",
    "eff_sources": "effective number of sources",
    "input_rms": "RMS of sublayer input",
    "output_rms": "RMS of sublayer output",
    "residual_rms": "RMS of residual stream",
    "grad_rms": "RMS of dLoss/dh",
    "mean": "mean weight",
}


def run_colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def base_layout(fig: go.Figure, title: str = "", height: int | None = None) -> go.Figure:
    """The common layout: white background, readable font, title at the top left, modest margins."""
    # No named template: applying one deep-copies it on every figure (~70 ms); the few settings are set here.
    fig.update_layout(
        plot_bgcolor="white", paper_bgcolor="white",
        font=dict(family=FONT, size=FONT_SIZE, color="#222"),
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=FONT_SIZE + 3)),
        margin=dict(l=70, r=30, t=70 if title else 30, b=60),
        hoverlabel=dict(font=dict(family=FONT, size=FONT_SIZE)),
        legend=dict(bgcolor="rgba(255,255,255,0.7)"),
    )
    if height:
        fig.update_layout(height=height)
    fig.update_xaxes(showline=True, linecolor="#444", ticks="outside", tickcolor="#444", showgrid=False, zeroline=False)
    fig.update_yaxes(showline=True, linecolor="#444", ticks="outside", tickcolor="#444", showgrid=False, zeroline=False)
    return fig


def layout_dict(title: str = "", height: int | None = None) -> dict:
    """base_layout's settings as a plain layout dict (for figures built as one dict, validated once)."""
    out = dict(
        plot_bgcolor="white", paper_bgcolor="white",
        font=dict(family=FONT, size=FONT_SIZE, color="#222"),
        title=dict(text=title, x=0.01, xanchor="left", font=dict(size=FONT_SIZE + 3)),
        margin=dict(l=70, r=30, t=70 if title else 30, b=60),
        hoverlabel=dict(font=dict(family=FONT, size=FONT_SIZE)),
    )
    if height:
        out["height"] = height
    return out


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure carrying a message (no data, not applicable to this run, ...)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=FONT_SIZE + 1, color="#555"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig, title, height=260)
