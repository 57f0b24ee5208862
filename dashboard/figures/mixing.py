"""The effective depth-mixing matrices of several mixers side by side (the paper's Fig. 9 at small scale).

Input: {panel title: tidy frame from `depthscope.analyses.mixing.Mixing.frame()`} with columns sublayer,
sublayer_label, source, source_label and the value column (default the row-normalised weight, so that methods
whose rows sum to very different totals, residual against AttnRes, share one colour scale).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import (DEFAULT_HEATMAP_SCALE, HEATMAP_SCALES, POWER_GAMMA, SEQUENTIAL, empty_figure, layout_dict,
                    warped_colorscale)


def mixing_matrices(frames: dict[str, pd.DataFrame], value: str = "weight_normalised",
                    title: str = "Effective depth-mixing matrix M (row-normalised)", scale: str | None = None,
                    gamma: float = POWER_GAMMA) -> go.Figure:
    """One panel per mixer on one colour axis (scale as in routing_heatmap: "power" by default, "log",
    "linear"; a row scale is what the row-normalised value already is)."""
    if not frames:
        return empty_figure("No mixing matrices to show.", title)
    scale = scale or DEFAULT_HEATMAP_SCALE
    if scale not in HEATMAP_SCALES:
        raise ValueError(f"unknown heatmap scale {scale!r}; choose from {', '.join(HEATMAP_SCALES)}")
    zmax = max(float(np.nanmax(frame[value].to_numpy(dtype=float))) for frame in frames.values())
    zmin = min(0.0, min(float(np.nanmin(frame[value].to_numpy(dtype=float))) for frame in frames.values()))
    n, gap = len(frames), 0.02
    width = (0.94 - gap * (n - 1)) / n
    traces, layout = [], {}
    for k, (name, frame) in enumerate(frames.items()):
        rows = frame[["sublayer", "sublayer_label"]].drop_duplicates().sort_values("sublayer")
        cols = frame[["source", "source_label"]].drop_duplicates().sort_values("source")
        z = np.full((len(rows), len(cols)), np.nan)  # [consumer sublayers, sources]
        r = frame["sublayer"].map({s: i for i, s in enumerate(rows["sublayer"])}).to_numpy()
        c = frame["source"].map({s: j for j, s in enumerate(cols["source"])}).to_numpy()
        z[r, c] = frame[value].to_numpy(dtype=float)
        suffix = "" if k == 0 else str(k + 1)
        traces.append(dict(type="heatmap", z=z, x=cols["source_label"].tolist(), y=rows["sublayer_label"].tolist(),
                           coloraxis="coloraxis", xaxis="x" + suffix, yaxis="y" + suffix,
                           hovertemplate=f"{name}<br>%{{y}} ← %{{x}}: %{{z:.4f}}<extra></extra>"))
        x0 = k * (width + gap)
        layout["xaxis" + suffix] = dict(domain=[x0, x0 + width], anchor="y" + suffix, type="category",
                                        title=dict(text="source"), showgrid=False, tickangle=90)
        layout["yaxis" + suffix] = dict(domain=[0, 0.92], anchor="x" + suffix, type="category", autorange="reversed",
                                        showgrid=False, showticklabels=k == 0,
                                        title=dict(text="consuming sublayer" if k == 0 else ""))
    layout["annotations"] = [dict(text=name, x=k * (width + gap) + width / 2, y=0.93, xref="paper", yref="paper",
                                  xanchor="center", yanchor="bottom", showarrow=False)
                             for k, name in enumerate(frames)]
    layout["coloraxis"] = dict(colorscale=warped_colorscale(SEQUENTIAL, scale, zmin, zmax, gamma), cmin=zmin,
                               cmax=zmax, colorbar=dict(title=dict(text="weight", side="right"), thickness=14))
    layout["meta"] = {"scale": scale, **({"gamma": gamma} if scale == "power" else {})}
    layout.update(layout_dict(title, 520))
    return go.Figure(dict(data=traces, layout=layout))
