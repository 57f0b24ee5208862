"""Line, bar and scatter figures laid out for print and drawn by kaleido (the system Chromium).

The builder's Plotly figure is copied and given the column width and fonts of `figures.style.PRINT_STYLES`,
thin lines and small markers, its legend in a row above the plot (not beside it, where it takes half a single
column), tick labels that fit the room they get at that size (log axes: 1-2-5, 1-3 or powers of ten by the
axis length; category axes: thinned or turned, `figures.style.category_ticks`) and axis titles broken onto two
lines when longer than their axis. The title is left to the caption unless asked for.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import plotly.graph_objects as go

from .figures.style import (LINE_EM, PRINT_STYLES, category_ticks, log_ticks, text_width, tick_text)
from .print_matrix import plain

PX_PER_IN = 96
PX_PER_PT = PX_PER_IN / 72
_kaleido_lock = threading.Lock()
_kaleido_started = False


def start_kaleido() -> None:
    """Start kaleido's Chromium once per process, MathJax off (no network)."""
    global _kaleido_started
    with _kaleido_lock:
        if not _kaleido_started:
            import kaleido

            kaleido.start_sync_server(mathjax=False, silence_warnings=True)
            _kaleido_started = True


def _axes(fig: go.Figure, letter: str) -> list[str]:
    return sorted((k for k in fig.layout.to_plotly_json() if k.startswith(f"{letter}axis")),
                  key=lambda k: int(k[5:] or 1))


def _trace_values(fig: go.Figure, letter: str, ref: str) -> list:
    values = []
    for t in fig.data:
        if (getattr(t, f"{letter}axis", None) or letter) != ref:
            continue
        v = getattr(t, letter, None)
        if v is not None:
            values.extend(list(v))
        err = getattr(t, f"error_{letter}", None)
        if err is not None and err.array is not None and v is not None:
            base = np.asarray(v, dtype=float)
            values.extend(list(base + np.asarray(err.array, dtype=float)))
            minus = err.arrayminus if err.arrayminus is not None else err.array
            values.extend(list(base - np.asarray(minus, dtype=float)))
    return values


def _wrap(text: str, length_px: float, font_px: float) -> str:
    """An axis title on two lines (at the space nearest its middle) when it is longer than its axis."""
    text = plain(text).replace("\n", " ")
    if text_width(text, font_px) <= length_px or " " not in text:
        return text
    middle = len(text) // 2
    cut = min((i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - middle))
    return text[:cut] + "<br>" + text[cut + 1:]


def print_figure(fig: go.Figure, style: str, title: bool = False) -> go.Figure:
    """A copy of `fig` laid out at the column width of `style` (the app's figure is not changed)."""
    st = PRINT_STYLES[style]
    fig = go.Figure(fig)
    font, tick = st.font_pt * PX_PER_PT, st.tick_pt * PX_PER_PT
    width = int(st.width_in * PX_PER_IN)
    y_axes, x_axes = _axes(fig, "y"), _axes(fig, "x")
    stacked = len({tuple(fig.layout[a].domain or (0, 1)) for a in y_axes}) > 1
    height = int(width * st.aspect * (1.45 if stacked else 1.0))
    named = [t for t in fig.data if t.showlegend is not False and t.name]
    legend = len(named) > 1
    head = plain(fig.layout.title.text).split("\n")[0] if title else ""
    fig.update_layout(
        width=width, height=height, font=dict(size=font, family="DejaVu Sans"),
        title=dict(text=head, font=dict(size=font + 1), x=0, xanchor="left", y=1, yanchor="top", pad=dict(t=4)),
        margin=dict(l=4, r=6, t=(font * LINE_EM + 8 if head else 4), b=4), showlegend=legend,
        legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", font=dict(size=tick),
                    bgcolor="rgba(0,0,0,0)", itemwidth=30, tracegroupgap=0, entrywidthmode="pixels"),
    )
    for t in fig.data:
        if isinstance(t, go.Scatter):
            if t.line is not None and t.line.width != 0:
                t.line.width = st.line_pt * PX_PER_PT
            if t.mode and "markers" in t.mode:
                t.marker.size = min(t.marker.size or 6, 6) * 0.6
            if t.error_y is not None and t.error_y.array is not None:
                t.error_y.thickness, t.error_y.width = 0.7, 2
    for shape in fig.layout.shapes or ():  # reference lines (baseline, k) as thin as the data lines
        if shape.line is not None:
            shape.line.width = min(shape.line.width or 1.0, st.line_pt * PX_PER_PT)
    for a in fig.layout.annotations or ():
        a.font = dict(size=tick, color=(a.font.color if a.font else None))
    plot_w = width - 70  # tick labels and a y title take about this much
    plot_h = height - 60 - (2 * tick * LINE_EM if legend else 0)
    for letter, names, along in (("x", x_axes, plot_w), ("y", y_axes, plot_h)):
        for name in names:
            axis = fig.layout[name]
            lo, hi = axis.domain if axis.domain else (0, 1)
            length = along * (hi - lo)
            axis.update(automargin=True, tickfont=dict(size=tick), ticklen=3, tickwidth=0.7, linewidth=0.7,
                        title_standoff=3)
            if axis.title and axis.title.text:
                axis.title.text = _wrap(axis.title.text, length, font)
                axis.title.font = dict(size=font)
            ref = name[0] + name[5:]
            if axis.type == "log" and axis.tickvals is not None:  # the builder's own ticks: thin if crowded
                given = list(axis.tickvals)
                room = max(1, int(length / (1.6 * LINE_EM * tick if letter == "y" else
                                            max(text_width(tick_text(v), tick) for v in given) + tick)))
                step = int(np.ceil(len(given) / room))
                axis.update(tickmode="array", tickvals=given[::step], ticktext=[tick_text(v) for v in given[::step]])
            elif axis.type == "log":
                values = np.asarray([v for v in _trace_values(fig, letter, ref) if v is not None], dtype=float)
                values = values[np.isfinite(values) & (values > 0)]
                if values.size:
                    ticks = log_ticks(values.min(), values.max(), length, tick)
                    if ticks:
                        axis.update(tickmode="array", tickvals=ticks, ticktext=[tick_text(v) for v in ticks])
            elif axis.type == "category" or (axis.categoryarray is not None and len(axis.categoryarray)):
                cats = list(axis.categoryarray) if axis.categoryarray is not None else []
                for v in _trace_values(fig, letter, ref):
                    if v not in cats:
                        cats.append(v)
                if cats and letter == "x" and axis.showticklabels is not False:
                    keep, angle = category_ticks([str(c) for c in cats], length, tick)
                    axis.update(tickmode="array", tickvals=[cats[i] for i in keep],
                                ticktext=[str(cats[i]) for i in keep], tickangle=-angle)
            elif letter == "x" and axis.dtick is not None:
                values = np.asarray([v for v in _trace_values(fig, letter, ref) if v is not None], dtype=float)
                if values.size:
                    span = float(np.nanmax(values) - np.nanmin(values)) + 1
                    room = length / (text_width("00", tick) * 1.8)
                    axis.dtick = max(float(axis.dtick), float(np.ceil(span / max(room, 1))))
            else:
                axis.nticks = max(2, int(length / ((LINE_EM if letter == "y" else 4.5) * tick * 1.8)))
    return fig


def line_bytes(fig: go.Figure, fmt: str, style: str, title: bool = False) -> bytes:
    """A line / bar / scatter figure as `fmt` bytes at the column width of `style`, through kaleido."""
    start_kaleido()
    fig = print_figure(fig, style, title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fig.to_image(format=fmt, width=fig.layout.width, height=fig.layout.height,
                            scale=3 if fmt == "png" else 1)
