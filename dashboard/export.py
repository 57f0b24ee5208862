"""Static export of the app's figures for papers: SVG, PDF or PNG, single (3.5 in) or double (7 in) column.

Line plots go through kaleido (the system Chromium, started once per process with MathJax off). Matrix figures
(heatmaps: routing, compare, tokens) are redrawn from the very Plotly figure the app shows with matplotlib
(`pcolormesh`, one vector path per cell), because Plotly embeds heatmaps in SVG/PDF as a PNG image. Beside each
file a JSON manifest names the run(s), statistic, parameters and code version.
"""
from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .runs import Catalogue
from .views import FIGURES

FORMATS = ("svg", "pdf", "png")
STYLES = {
    # width in inches, base font size in points, plotly px per inch
    "single": dict(width=3.5, font=7.5),
    "double": dict(width=7.0, font=9.0),
}
PX_PER_IN = 96
_kaleido_lock = threading.Lock()
_kaleido_started = False


class ExportError(ValueError):
    """A figure, format or style the exporter does not know, or a view that cannot be drawn."""


def _start_kaleido() -> None:
    global _kaleido_started
    with _kaleido_lock:
        if not _kaleido_started:
            import kaleido

            kaleido.start_sync_server(mathjax=False, silence_warnings=True)
            _kaleido_started = True


def _plain(text: str | None) -> str:
    """Plotly title HTML -> plain text (a <br> becomes a new line)."""
    if not text:
        return ""
    text = re.sub(r"<br\s*/?>", "\n", text)
    return re.sub(r"<[^>]+>", "", text).strip()


# ------------------------------------------------------------------------------------------------ lines


def line_bytes(fig: go.Figure, fmt: str, style: str) -> bytes:
    """A line/bar figure through kaleido at paper size (fonts scaled to the column width)."""
    _start_kaleido()
    st = STYLES[style]
    fig = go.Figure(fig)  # a copy: the app's figure is not changed
    width = int(st["width"] * PX_PER_IN)
    height = int(width * (0.75 if style == "single" else 0.5)) + 40
    title = _plain(fig.layout.title.text).split("\n")[0]
    fig.update_layout(
        width=width, height=height, font=dict(size=st["font"] * PX_PER_IN / 72),
        title=dict(text=title, font=dict(size=(st["font"] + 1) * PX_PER_IN / 72)),
        margin=dict(l=50, r=10, t=30 if title else 10, b=40),
        legend=dict(font=dict(size=(st["font"] - 0.5) * PX_PER_IN / 72)),
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fig.to_image(format=fmt, width=width, height=height, scale=3 if fmt == "png" else 1)


# ------------------------------------------------------------------------------------------------ matrices


def _cmap(scale):
    from matplotlib.colors import LinearSegmentedColormap

    stops = [(float(p), c) for p, c in scale]
    colours = []
    for _, c in stops:
        if isinstance(c, str) and c.startswith("rgb"):
            nums = [float(x) for x in re.findall(r"[\d.]+", c)[:3]]
            colours.append(tuple(v / 255 for v in nums))
        else:
            colours.append(c)
    return LinearSegmentedColormap.from_list("plotly", list(zip([p for p, _ in stops], colours)))


def matrix_bytes(fig: go.Figure, fmt: str, style: str) -> bytes:
    """Redraw the heatmap traces of a Plotly figure with matplotlib: true vector cells in SVG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import rcParams

    st = STYLES[style]
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    if not heatmaps:
        raise ExportError("this figure has no heatmap to draw")
    coloraxis = fig.layout.coloraxis
    widths = [max(1, len(t.x) if t.x is not None else np.asarray(t.z).shape[1]) for t in heatmaps]
    rows = max(np.asarray(t.z).shape[0] for t in heatmaps)
    width = st["width"]
    has_text = any(t.texttemplate for t in heatmaps)
    cell_h = (width / max(sum(widths), 1)) if has_text else 0.16 * st["font"] / 8
    height = min(9.0, max(1.8, 0.9 + rows * cell_h * (1.1 if has_text else 1.0)))
    titles = [a.text for a in (fig.layout.annotations or []) if a.xref == "paper" and a.yref == "paper" and a.text]
    with matplotlib.rc_context({
        "font.size": st["font"], "axes.titlesize": st["font"], "axes.labelsize": st["font"],
        "xtick.labelsize": st["font"] - 1, "ytick.labelsize": st["font"] - 1, "svg.fonttype": "none",
        "pdf.fonttype": 42, "font.family": "DejaVu Sans",
    }):
        figure, axes = plt.subplots(1, len(heatmaps), figsize=(width, height), squeeze=False,
                                    gridspec_kw={"width_ratios": widths}, constrained_layout=True)
        mesh = None
        for k, (ax, t) in enumerate(zip(axes[0], heatmaps)):
            z = np.asarray(t.z, dtype=float)
            scale = t.colorscale if t.colorscale else coloraxis.colorscale
            vmin = t.zmin if t.zmin is not None else coloraxis.cmin
            vmax = t.zmax if t.zmax is not None else coloraxis.cmax
            mesh = ax.pcolormesh(np.ma.masked_invalid(z), cmap=_cmap(scale), vmin=vmin, vmax=vmax,
                                 edgecolors="white", linewidth=0.4 if z.size <= 2500 else 0.0)
            ax.set_xlim(0, z.shape[1])
            ax.set_ylim(z.shape[0], 0)
            ax.set_aspect("equal" if has_text or z.shape[1] <= 64 else "auto")
            xa = fig.layout["xaxis" if k == 0 else f"xaxis{k + 1}"]
            ya = fig.layout["yaxis" if k == 0 else f"yaxis{k + 1}"]
            if has_text:
                text = np.asarray(t.text, dtype=object)
                for (r, c), ch in np.ndenumerate(text):
                    if ch:
                        ax.text(c + 0.5, r + 0.5, str(ch), ha="center", va="center", fontsize=st["font"] - 1.5,
                                family="DejaVu Sans Mono")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                xs = list(t.x) if t.x is not None else list(range(z.shape[1]))
                ys = list(t.y) if t.y is not None else list(range(z.shape[0]))
                tickvals = list(xa.tickvals) if xa.tickvals is not None else None
                if tickvals is not None and xa.ticktext is not None:
                    ax.set_xticks(np.asarray(tickvals) + 0.5, [str(v) for v in xa.ticktext])
                else:
                    every = max(1, len(xs) // 40)
                    ax.set_xticks(np.arange(0, len(xs), every) + 0.5, [str(v) for v in xs[::every]],
                                  rotation=90 if len(xs) > 8 else 0)
                every = max(1, len(ys) // 48)
                ax.set_yticks(np.arange(0, len(ys), every) + 0.5, [str(v) for v in ys[::every]])
                ax.tick_params(length=0)
                if xa.title and xa.title.text:
                    ax.set_xlabel(xa.title.text)
                if ya.title and ya.title.text:
                    ax.set_ylabel(ya.title.text)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if k < len(titles) and len(heatmaps) > 1:
                ax.set_title(_plain(titles[k]))
        cbar_title = ""
        if coloraxis.colorbar and coloraxis.colorbar.title and coloraxis.colorbar.title.text:
            cbar_title = coloraxis.colorbar.title.text
        elif heatmaps[0].colorbar and heatmaps[0].colorbar.title and heatmaps[0].colorbar.title.text:
            cbar_title = heatmaps[0].colorbar.title.text
        cb = figure.colorbar(mesh, ax=axes[0].tolist(), shrink=0.9, pad=0.02, aspect=25)
        cb.solids.set_rasterized(False)  # matplotlib rasterises long colour bars; keep the file all vector
        cb.set_label(cbar_title)
        cb.outline.set_visible(False)
        title = _plain(fig.layout.title.text).split("\n")[0]
        if title:
            figure.suptitle(title, fontsize=st["font"] + 1)
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt, dpi=300, metadata=None if fmt == "png" else {"Creator": "depthscope"})
        plt.close(figure)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ API


def figure_bytes(fig: go.Figure, fmt: str, style: str, matrix: bool = False) -> bytes:
    """Any figure (a builder's output) as `fmt` bytes: heatmaps through matplotlib when `matrix`, else kaleido."""
    if matrix and any(isinstance(t, go.Heatmap) for t in fig.data):
        return matrix_bytes(fig, fmt, style)
    return line_bytes(fig, fmt, style)


@dataclass
class Exported:
    name: str  # file name (figure.format)
    data: bytes
    manifest: dict


def render(cat: Catalogue, figure: str, params: dict, fmt: str = "svg", style: str = "single") -> Exported:
    """Draw figure `figure` of the view `params` as `fmt` bytes, with its manifest."""
    from depthscope.probe.store import code_version

    if figure not in FIGURES:
        raise ExportError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if style not in STYLES:
        raise ExportError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    spec = FIGURES[figure]
    fig = spec.build(cat, params)
    has_heatmap = any(isinstance(t, go.Heatmap) for t in fig.data)
    data = matrix_bytes(fig, fmt, style) if spec.matrix and has_heatmap else line_bytes(fig, fmt, style)
    runs = {}
    for key in ("run", "baseline", "other"):
        if params.get(key) and key in spec.params:
            try:
                runs[key] = {"id": params[key], "path": str(cat.resolve(params[key])),
                             "code_version": cat.open(params[key]).manifest.get("code_version")}
            except Exception:
                runs[key] = {"id": params[key]}
    manifest = {
        "figure": figure,
        "file": f"{figure}.{fmt}",
        "statistic": spec.statistic,
        "runs": runs,
        "parameters": {k: params[k] for k in spec.params if params.get(k) not in (None, "")},
        "format": fmt,
        "style": style,
        "width_in": STYLES[style]["width"],
        "renderer": "matplotlib (vector heatmap)" if spec.matrix and has_heatmap else "plotly + kaleido",
        "title": _plain(fig.layout.title.text),
        "code_version": code_version(),
    }
    return Exported(f"{figure}.{fmt}", data, manifest)


def export_files(cat: Catalogue, figures: list[str], params: dict, fmt: str, style: str, out: str | Path) -> list[Path]:
    """Write each figure and its manifest (NAME.FORMAT + NAME.FORMAT.json) into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in figures:
        result = render(cat, name, params, fmt, style)
        path = out / result.name
        path.write_bytes(result.data)
        (out / (result.name + ".json")).write_text(json.dumps(result.manifest, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written
