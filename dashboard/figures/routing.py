"""Sublayer x source weight matrices: the routing heatmap (pre-attention and pre-MLP panels), a cell's
distribution over tokens, and the difference of two runs.

Input frames are tidy, one row per (consuming sublayer, source): slot, label (the consuming sublayer's label),
source_index, source (the run's own source label), a value column (default "mean") and optionally count / std.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from depthscope.models import ATTN, statistic_label, sublayer_kind

from .style import (
    DEFAULT_HEATMAP_SCALE,
    DIVERGING,
    FONT_SIZE,
    HEATMAP_SCALES,
    POWER_GAMMA,
    SEQUENTIAL,
    base_layout,
    empty_figure,
    layout_dict,
    warped_colorscale,
)

PANELS = (("pre-attention", ("attn",)), ("pre-MLP / final", ("mlp", "final")))


def panel_of(label: str) -> int:
    """0 for attention sublayers, 1 for MLP sublayers and the final mixer (and anything else)."""
    return 0 if sublayer_kind(str(label)) == ATTN else 1


def matrix(frame: pd.DataFrame, value: str = "mean", columns: list[str] | None = None):
    """(z [rows, columns], row labels, column labels, slots, customdata [rows, columns, 4]) of a tidy frame.

    Columns are the source labels (in `columns` order if given, else the order of first appearance with the
    longest row first); rows the consuming sublayers in depth order. customdata: slot, source_index, count, std.
    """
    if columns is None:
        rows = frame.groupby("slot", sort=True)["source"].apply(list).tolist()
        columns = []
        if rows:
            columns = list(max(rows, key=len))
            for row in rows:
                columns += [s for s in row if s not in columns]
    order = frame[["slot", "label"]].drop_duplicates().sort_values("slot")
    slots, labels = order["slot"].tolist(), order["label"].tolist()
    ri = {s: i for i, s in enumerate(slots)}
    ci = {c: j for j, c in enumerate(columns)}
    z = np.full((len(slots), len(columns)), np.nan)
    custom = np.full((len(slots), len(columns), 4), np.nan)
    r = frame["slot"].map(ri).to_numpy()
    c = frame["source"].map(ci).to_numpy()
    ok = ~pd.isna(c)
    r, c = r[ok].astype(int), c[ok].astype(int)
    sub = frame[ok]
    z[r, c] = sub[value].to_numpy(dtype=float)
    custom[r, c, 0] = sub["slot"].to_numpy()
    custom[r, c, 1] = sub["source_index"].to_numpy()
    custom[r, c, 2] = sub["count"].to_numpy(dtype=float) if "count" in sub else np.nan
    custom[r, c, 3] = sub["std"].to_numpy(dtype=float) if "std" in sub else np.nan
    return z, labels, list(columns), slots, custom


def block_starts(columns: list[str], z: np.ndarray) -> list[int]:
    """Rows (of z [rows, columns]) where a new Block AttnRes block begins: the number of completed blocks a
    sublayer may draw on (its finite `block*` columns) grows there. Empty for other mixers."""
    blocks = [j for j, c in enumerate(columns) if str(c).startswith("block")]
    if not blocks:
        return []
    done = np.isfinite(z[:, blocks]).sum(1)  # [rows]
    return [i for i in range(1, len(done)) if done[i] > done[i - 1]]


def routing_heatmap(frame: pd.DataFrame, title: str = "Token-averaged depth attention", value: str = "mean",
                    columns: list[str] | None = None, zmin: float | None = None, zmax: float | None = None,
                    diverging: bool = False, split: bool = True, colorbar_title: str | None = None,
                    height: int | None = None, scale: str | None = None, gamma: float = POWER_GAMMA) -> go.Figure:
    """Consuming sublayer (rows, top = first) x source (columns) heatmap of `value`, in a pre-attention panel
    and a pre-MLP / final panel (split=False: one panel). Hover: exact value, tokens counted, std over tokens.
    Clicking a cell yields customdata [slot, source_index, count, std, value].

    scale (sequential values; a diverging difference is always linear): "power" (default: colours spent as
    value ** gamma, so that weights of 0.02-0.3 are told apart beside the embedding's 0.6-1.0), "log", "row"
    (each row divided by its largest weight: where each sublayer looks, whatever its embedding share), or
    "linear". The colour bar shows true values in every case but "row". Block AttnRes rows are ruled where a new
    block begins."""
    if frame is None or len(frame) == 0:
        return empty_figure("This run recorded no depth-attention weights.", title)
    scale = "linear" if diverging else (scale or DEFAULT_HEATMAP_SCALE)
    if scale not in HEATMAP_SCALES:
        raise ValueError(f"unknown heatmap scale {scale!r}; choose from {', '.join(HEATMAP_SCALES)}")
    z, labels, columns, slots, custom = matrix(frame, value, columns)
    custom = np.concatenate([custom, z[..., None]], axis=-1)  # [rows, columns, 5]: the true value last
    vname = colorbar_title or statistic_label(value)
    if scale == "row":
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.nanmax(np.abs(np.where(np.isfinite(z), z, np.nan)), axis=1, keepdims=True)  # [rows, 1]
            z = np.where(peak > 0, z / peak, z)
        zmin, zmax, vname = 0.0, 1.0, f"{vname} / row maximum"
    finite = z[np.isfinite(z)]
    if diverging:
        bound = float(np.max(np.abs(finite))) if finite.size else 1.0
        bound = bound or 1.0
        zmin, zmax = (-bound if zmin is None else zmin), (bound if zmax is None else zmax)
    else:
        zmin = float(finite.min()) if zmin is None and finite.size else (0.0 if zmin is None else zmin)
        zmax = float(finite.max()) if zmax is None and finite.size else (1.0 if zmax is None else zmax)
        if zmax <= zmin:
            zmax = zmin + 1e-6
    groups = [[i for i, l in enumerate(labels) if panel_of(l) == p] for p in range(2)] if split else [list(range(len(labels)))]
    groups = [g for g in groups if g]
    names = [PANELS[panel_of(labels[g[0]])][0] if split else "all sublayers" for g in groups]
    # Built as one dict and validated once: many update_* calls cost ~100 ms per figure on a busy CPU.
    gap, n = 0.12, len(groups)
    width = (0.94 - gap * (n - 1)) / n
    traces, layout, shapes = [], {}, []
    axis_style = dict(showgrid=False, ticks="", showline=False, zeroline=False, type="category")
    for k, g in enumerate(groups):
        zz = z[g]
        used = np.isfinite(zz).any(0)
        keep = [j for j in range(len(columns)) if used[j]]
        suffix = "" if k == 0 else str(k + 1)
        traces.append(dict(
            type="heatmap", z=zz[:, keep], x=[columns[j] for j in keep], y=[labels[i] for i in g],
            customdata=custom[g][:, keep], coloraxis="coloraxis", xgap=1, ygap=1, xaxis="x" + suffix,
            yaxis="y" + suffix,
            hovertemplate=("consumer %{y}<br>source %{x}<br>" + statistic_label(value) + " %{customdata[4]:.4f}"
                           "<br>tokens %{customdata[2]:,.0f}<br>std over tokens %{customdata[3]:.4f}<extra></extra>"),
        ))
        for row in block_starts([columns[j] for j in keep], zz[:, keep]):
            shapes.append(dict(type="line", xref=f"x{suffix} domain", x0=0, x1=1, yref="y" + suffix, y0=row - 0.5,
                               y1=row - 0.5, line=dict(color="white", width=2.5)))
        x0 = k * (width + gap)
        layout["xaxis" + suffix] = dict(axis_style, domain=[x0, x0 + width], anchor="y" + suffix,
                                        title=dict(text="source"), tickangle=-45 if len(keep) > 8 else 0)
        layout["yaxis" + suffix] = dict(axis_style, domain=[0, 1], anchor="x" + suffix, autorange="reversed",
                                        title=dict(text="consuming sublayer" if k == 0 else ""))
    layout["annotations"] = [dict(text=name, x=k * (width + gap) + width / 2, y=1.0, xref="paper", yref="paper",
                                  xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=FONT_SIZE + 1))
                             for k, name in enumerate(names)]
    layout["shapes"] = shapes
    colours = DIVERGING if diverging else warped_colorscale(SEQUENTIAL, scale, zmin, zmax, gamma)
    layout["coloraxis"] = dict(colorscale=colours, cmin=zmin, cmax=zmax,
                               colorbar=dict(title=dict(text=vname, side="right"), thickness=14))
    layout["meta"] = {"scale": scale, **({"gamma": gamma} if scale == "power" else {})}
    n_rows = max(len(g) for g in groups)
    layout.update(layout_dict(title, height or int(min(900, max(360, 150 + 22 * n_rows)))))
    return go.Figure(dict(data=traces, layout=layout))


def routing_difference(diff: pd.DataFrame, title: str = "Difference (run - other)", **kw) -> go.Figure:
    """The difference of two runs' matrices (frame from data.difference_frame), on a symmetric diverging scale."""
    return routing_heatmap(diff, title, value="mean", diverging=True, colorbar_title="difference of mean weight", **kw)


def cell_distribution(edges: np.ndarray, counts: np.ndarray, title: str = "Weight over tokens",
                      note: str = "") -> go.Figure:
    """Histogram of one weight alpha[consumer, source] over tokens (bars between `edges`)."""
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig = go.Figure(go.Bar(x=centres, y=counts, width=width * 0.95, marker_color="#0072B2",
                           hovertemplate="weight %{x:.3f}<br>tokens %{y:,}<extra></extra>"))
    fig.update_xaxes(title_text="weight", range=[float(edges[0]), float(edges[-1])])
    fig.update_yaxes(title_text="tokens")
    base_layout(fig, title + (f"<br><sup>{note}</sup>" if note else ""), height=320)
    return fig
