"""Heatmap figures redrawn for print with matplotlib: true vector cells (`pcolormesh`, one path per cell), since
Plotly embeds heatmaps in SVG / PDF as a PNG image.

The Plotly figure a builder made (dashboard.figures) is the only input: its heatmap traces, colour axis (the very
colour stops, so a power or log colour scale reads the same), panel titles, axis titles, tick labels and rules
(`layout.shapes`, e.g. Block AttnRes block starts). What print adds: the column width and fonts of
`figures.style.PRINT_STYLES`, panels wrapped into rows when they would be too narrow, tick labels thinned or
turned by the room each label gets (`figures.style.category_ticks`), and coloured text re-wrapped to the width.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .figures.style import PRINT_STYLES, PT_PER_IN, category_ticks, text_width
from .figures.tokens import text_grid

MIN_PANEL_IN = 1.05  # narrower panels are wrapped onto another row
MIN_ROW_IN = {"single": 0.125, "double": 0.14}  # a row of cells is at least one label tall
MAX_ROW_IN = 0.2
MAX_HEIGHT_IN = 8.5


def plain(text: str | None) -> str:
    """Plotly title HTML -> plain text (a <br> becomes a new line)."""
    if not text:
        return ""
    text = re.sub(r"<br\s*/?>", "\n", text)
    return re.sub(r"<[^>]+>", "", text).strip()


def _cmap(scale):
    from matplotlib.colors import LinearSegmentedColormap
    from plotly.colors import get_colorscale

    stops = get_colorscale(scale) if isinstance(scale, str) else scale
    colours = []
    for _, c in stops:
        if isinstance(c, str) and c.startswith("rgb"):
            nums = [float(x) for x in re.findall(r"[\d.]+", c)[:3]]
            colours.append(tuple(v / 255 for v in nums))
        else:
            colours.append(c)
    return LinearSegmentedColormap.from_list("plotly", list(zip([float(p) for p, _ in stops], colours)))


def _rewrap(trace: go.Heatmap, chars_per_line: int):
    """A coloured-text heatmap (figures.tokens.token_text) laid out again at `chars_per_line`: the same tokens in
    the same order, through the builder's own text_grid."""
    index = np.asarray(trace.customdata, dtype=np.int64).ravel()
    z = np.asarray(trace.z, dtype=float).ravel()
    text = np.asarray(trace.text, dtype=object).ravel()
    keep = index >= 0
    char = ["\\n" if c == "⏎" else (" " if c == "·" else c) for c in text[keep]]
    frame = pd.DataFrame({"index": index[keep], "char": char, "value": z[keep]})
    values, chars, _ = text_grid(frame, "value", chars_per_line)
    return values, chars


def _axis(fig: go.Figure, letter: str, k: int):
    return fig.layout[f"{letter}axis" if k == 0 else f"{letter}axis{k + 1}"]


def _colorbar_title(fig: go.Figure, trace: go.Heatmap) -> str:
    axis = fig.layout.coloraxis
    for bar in (axis.colorbar if axis else None, trace.colorbar):
        if bar and bar.title and bar.title.text:
            return plain(bar.title.text)
    return ""


def matrix_bytes(fig: go.Figure, fmt: str, style: str, title: bool = False) -> bytes:
    """The heatmap traces of a Plotly figure as `fmt` bytes at the column width of `style`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = PRINT_STYLES[style]
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    if not heatmaps:
        raise ValueError("this figure has no heatmap to draw")
    coloraxis = fig.layout.coloraxis
    has_text = any(t.texttemplate for t in heatmaps)
    panels = []  # (z [rows, cols], x labels, y labels, trace)
    for t in heatmaps:
        if has_text:
            # a monospace advance is 0.6 em; a cell a little wider keeps neighbours apart
            per_line = int((st.width_in - (0.62 if style == "single" else 0.7) - 0.2) * PT_PER_IN / (0.68 * st.tick_pt))
            z, chars = _rewrap(t, per_line)
            panels.append((z, [], [], t, chars))
            continue
        z = np.asarray(t.z, dtype=float)
        xs = [str(v) for v in t.x] if t.x is not None else [str(i) for i in range(z.shape[1])]
        ys = [str(v) for v in t.y] if t.y is not None else [str(i) for i in range(z.shape[0])]
        panels.append((z, xs, ys, t, None))
    n = len(panels)
    cbar_in = 0.62 if style == "single" else 0.7
    ylabel_in = 0.15 + max((text_width(y, st.tick_pt) for p in panels for y in p[2]), default=0) / PT_PER_IN
    free = st.width_in - cbar_in - ylabel_in
    per_row = max(1, min(n, int(free // MIN_PANEL_IN)))
    grid_rows = int(np.ceil(n / per_row))
    cols_per_panel = [max(1, p[0].shape[1]) for p in panels]
    # panel widths in one row share the room in proportion to their columns (same cell width everywhere)
    widest_row = max(sum(cols_per_panel[r * per_row:(r + 1) * per_row]) for r in range(grid_rows))
    cell_w = (free - 0.12 * (per_row - 1)) / widest_row
    rows = max(p[0].shape[0] for p in panels)
    # rows: square cells where that is between one label tall and MAX_ROW_IN, else the nearer bound
    cell_h = min(max(cell_w, MIN_ROW_IN[style]), MAX_ROW_IN) if not has_text else st.tick_pt * 1.35 / PT_PER_IN
    panel_h = min(rows * cell_h, (MAX_HEIGHT_IN - 0.6) / grid_rows - 0.9)
    if has_text:
        xlabels_in = 0.0
    else:
        longest = max((text_width(x, st.tick_pt) for p in panels for x in p[1]), default=0) / PT_PER_IN
        xlabels_in = min(longest, 0.9) + 0.35
    titles = [a.text for a in (fig.layout.annotations or []) if a.xref == "paper" and a.yref == "paper" and a.text]
    panel_titles = n > 1 and len(titles) >= n
    top_in = (0.22 if panel_titles else 0.05) + (0.25 if title else 0.0)
    height = min(MAX_HEIGHT_IN, grid_rows * (panel_h + xlabels_in + (0.2 if panel_titles else 0)) + top_in + 0.1)
    rc = {
        "font.size": st.font_pt, "axes.titlesize": st.font_pt, "axes.labelsize": st.font_pt,
        "xtick.labelsize": st.tick_pt, "ytick.labelsize": st.tick_pt, "svg.fonttype": "none",
        "pdf.fonttype": 42, "ps.fonttype": 42, "font.family": "DejaVu Sans", "axes.linewidth": 0.5,
        "xtick.major.width": 0.5, "ytick.major.width": 0.5,
    }
    with matplotlib.rc_context(rc):
        figure = plt.figure(figsize=(st.width_in, height), layout="constrained")
        figure.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.04, hspace=0.04)
        width_ratios = cols_per_panel[:per_row] if grid_rows == 1 else [1] * per_row
        spec = figure.add_gridspec(grid_rows, per_row, width_ratios=width_ratios)
        axes, mesh, ticks = [], None, []
        for k, (z, xs, ys, t, chars) in enumerate(panels):
            ax = figure.add_subplot(spec[k // per_row, k % per_row], sharey=axes[0] if axes and grid_rows == 1 and
                                    ys == panels[0][2] else None)
            axes.append(ax)
            scale = t.colorscale if t.colorscale else coloraxis.colorscale
            vmin = t.zmin if t.zmin is not None else coloraxis.cmin
            vmax = t.zmax if t.zmax is not None else coloraxis.cmax
            mesh = ax.pcolormesh(np.ma.masked_invalid(z), cmap=_cmap(scale), vmin=vmin, vmax=vmax,
                                 edgecolors="white", linewidth=0.3 if z.size <= 2500 and not has_text else 0.0)
            ax.set_xlim(0, z.shape[1])
            ax.set_ylim(z.shape[0], 0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.tick_params(length=0, pad=1.5)
            if has_text:
                for (r, c), ch in np.ndenumerate(chars):
                    if ch:
                        ax.text(c + 0.5, r + 0.5, str(ch), ha="center", va="center", fontsize=st.tick_pt,
                                family="DejaVu Sans Mono")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                xa, ya = _axis(fig, "x", k), _axis(fig, "y", k)
                if xa.tickvals is not None and xa.ticktext is not None:
                    positions = list(np.asarray(xa.tickvals, dtype=float))
                    names = [str(v) for v in xa.ticktext]
                else:
                    positions, names = list(range(len(xs))), xs
                ticks.append((ax, "x", positions, names, len(xs)))
                ticks.append((ax, "y", list(range(len(ys))), ys, len(ys)))
                if xa.title and xa.title.text:
                    ax.set_xlabel(plain(xa.title.text), labelpad=2)
                if ya.title and ya.title.text and k % per_row == 0:
                    ax.set_ylabel(plain(ya.title.text), labelpad=2)
                if ax.get_shared_y_axes().get_siblings(ax) != [ax] and k % per_row:
                    ax.tick_params(labelleft=False)
            for shape in fig.layout.shapes or ():
                if shape.type == "line" and shape.yref == ("y" if k == 0 else f"y{k + 1}") and shape.y0 == shape.y1:
                    ax.axhline(float(shape.y0) + 0.5, color="white", linewidth=1.6)
            if panel_titles:
                ax.set_title(plain(titles[k]), pad=3)
        cb = figure.colorbar(mesh, ax=axes, shrink=0.9 if grid_rows == 1 else 0.6, pad=0.02, aspect=22,
                             fraction=0.05)
        cb.solids.set_rasterized(False)  # matplotlib rasterises long colour bars; keep the file all vector
        cb.set_label(_colorbar_title(fig, heatmaps[0]), labelpad=2)
        cb.outline.set_visible(False)
        cb.ax.tick_params(length=2, width=0.5, pad=1.5)
        if title:
            text = plain(fig.layout.title.text).split("\n")[0]
            if text:
                figure.suptitle(text, fontsize=st.font_pt + 0.5)
        for task in ticks:  # ticks by the estimated panel size, one layout pass, then by the size it gave
            _set_ticks(*task, st)
        figure.get_layout_engine().execute(figure)  # the layout alone: no artist is drawn
        for task in ticks:
            _set_ticks(*task, st)
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt, dpi=300, metadata=None if fmt == "png" else {"Creator": "depthscope"})
        plt.close(figure)
    return buf.getvalue()


def _set_ticks(ax, which: str, positions: list[float], names: list[str], cells: int, st) -> None:
    """Tick labels at cell centres, thinned / turned by the room the panel gives each of them at print size."""
    box = ax.get_position()  # figure fractions; after a layout pass, the panel as drawn
    length = (box.width * ax.figure.get_figwidth() if which == "x" else box.height * ax.figure.get_figheight()) * PT_PER_IN
    if which == "y":  # rows: a label is one line tall; thin by the room between given ticks only
        slot = length / max(len(names), 1)
        step = max(1, int(np.ceil(1.3 * st.tick_pt / slot)))
        if step > 1 and step % 2:
            step += 1  # even steps keep one sublayer kind per tick (attn1, attn2, ...)
        keep = list(range(0, len(names), step))
        ax.set_yticks([positions[i] + 0.5 for i in keep], [names[i] for i in keep])
        return
    keep, angle = category_ticks(names, length, st.tick_pt)
    ax.set_xticks([positions[i] + 0.5 for i in keep], [names[i] for i in keep], rotation=angle)
