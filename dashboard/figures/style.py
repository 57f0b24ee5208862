"""One look for the app, notebooks and exported figures: fonts, colour-blind-safe scales, run colours."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


# ------------------------------------------------------------------------------------------------ print

@dataclass(frozen=True)
class PrintStyle:
    """A paper column: the figure's width, its font sizes in points at that width, and line weights."""

    name: str
    width_in: float
    font_pt: float  # axis titles, legend, panel titles
    tick_pt: float  # tick labels, colour-bar labels
    line_pt: float  # data lines
    aspect: float  # height / width of a line plot with one panel


PRINT_STYLES = {
    "single": PrintStyle("single", 3.4, 8.0, 7.0, 1.0, 0.78),
    "double": PrintStyle("double", 7.0, 9.0, 8.0, 1.2, 0.42),
}
PT_PER_IN = 72.0
# Character advances of DejaVu Sans in ems (rounded up a little): to decide how many labels fit before
# anything is drawn. Digits and most lower case are 0.61-0.64 em.
_NARROW, _SEMI, _WIDE = set("ijl.,:;'|!I"), set("frt -()[]/*"), set("mwMW@%")
LINE_EM = 1.25  # the height of one line of text, in ems


def text_width(text: str, size: float) -> float:
    """Upper bound of the drawn width of `text` at font size `size` (same unit as size)."""
    ems = sum(0.30 if c in _NARROW else 0.42 if c in _SEMI else 0.98 if c in _WIDE
              else 0.74 if c.isupper() else 0.64 for c in str(text))
    return max(ems, 0.64) * size


def category_ticks(labels: list[str], length: float, size: float) -> tuple[list[int], int]:
    """Which of n evenly spaced category labels to show along an axis `length` long, and at what angle
    (0 or 90), so that no two labels collide at font size `size` (same unit as length).

    Every label level when they fit, else every label turned by 90 degrees, else every second label level
    (alternating attn / mlp labels keep one kind), else turned and thinned to one label per line of text."""
    n = len(labels)
    if n == 0:
        return [], 0
    slot = length / n
    widest = max(text_width(l, size) for l in labels) + 0.4 * size
    line = LINE_EM * size
    if widest <= slot:
        return list(range(n)), 0
    if line <= slot:
        return list(range(n)), 90
    if widest <= 2 * slot:
        return list(range(0, n, 2)), 0
    step = max(1, int(np.ceil(line / slot)))
    if step > 1 and step % 2 and n > 2:
        step += 1  # even steps keep one sublayer kind per tick (attn1, attn2, ...)
    return list(range(0, n, step)), 90


def log_ticks(lo: float, hi: float, length: float, size: float) -> list[float]:
    """Tick values for a log axis spanning lo..hi (> 0) on `length` (same unit as size): 1-2-5 per decade when
    they fit at one label per 1.6 lines of text, else 1-3, else powers of ten, else every k-th power."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= 0:
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    decades = max(np.log10(hi) - np.log10(lo), 1e-9)
    room = length / (1.6 * LINE_EM * size)  # labels that fit along the axis
    d0, d1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** d for d in range(d0, d1 + 1) for m in mantissas]
        ticks = [t for t in ticks if lo <= t <= hi]
        if len(ticks) <= room and len(ticks) >= 2 or (mantissas == (1,) and len(ticks) <= room):
            return ticks
    every = int(np.ceil(decades / max(room - 1, 1)))
    return [10.0 ** d for d in range(d0, d1 + 1, max(every, 1)) if lo <= 10.0 ** d <= hi]


def tick_text(value: float) -> str:
    """A log-axis tick label: 0.02, 0.5, 3, 10, 2k, 1M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


# ------------------------------------------------------------------------------------------------ colour scales

HEATMAP_SCALES = ("power", "log", "row", "linear")
DEFAULT_HEATMAP_SCALE = "power"  # the embedding's 0.6-1.0 would otherwise paint every other source one colour
POWER_GAMMA = 0.5


def warped_colorscale(base, scale: str, zmin: float, zmax: float, gamma: float = POWER_GAMMA, stops: int = 33):
    """An explicit Plotly colour scale that draws values zmin..zmax linearly in *value* but spends the colours
    like a power (colour position = u ** gamma, u the value's place in zmin..zmax) or log scale would. The data
    and the colour bar keep their true values; only where the colours change is moved, so the matplotlib export
    (which reads the stops) draws the very same mapping."""
    from plotly.colors import sample_colorscale

    if scale not in ("power", "log") or not (np.isfinite(zmin) and np.isfinite(zmax)) or zmax <= zmin:
        return base
    s = np.linspace(0.0, 1.0, stops)  # colour positions
    if scale == "power":
        u = s ** (1.0 / gamma)
    else:  # log: colour position = log(v / lo) / log(hi / lo), with lo a positive floor
        lo = zmin if zmin > 0 else zmax * 1e-3
        v = lo * (zmax / lo) ** s
        u = np.clip((v - zmin) / (zmax - zmin), 0.0, 1.0)
        u[0] = 0.0
    colours = sample_colorscale(base, list(s))
    out, last = [], -1.0
    for pos, colour in zip(u, colours):
        pos = float(min(1.0, max(pos, last + 1e-9)))
        out.append([pos, colour])
        last = pos
    out[-1][0] = 1.0
    return out
