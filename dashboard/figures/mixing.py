"""The effective depth-mixing matrices of several mixers side by side (the paper's Fig. 9 at small scale).

Input: {panel title: tidy frame from `depthscope.analyses.mixing.Mixing.frame()`} with columns sublayer,
sublayer_label, source, source_label and the value column (default the row-normalised weight, so that methods
whose rows sum to very different totals, residual against AttnRes, share one colour scale).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import SEQUENTIAL, base_layout, empty_figure


def mixing_matrices(frames: dict[str, pd.DataFrame], value: str = "weight_normalised",
                    title: str = "Effective depth-mixing matrix M (row-normalised)") -> go.Figure:
    if not frames:
        return empty_figure("No mixing matrices to show.", title)
    fig = make_subplots(rows=1, cols=len(frames), subplot_titles=list(frames), horizontal_spacing=0.03,
                        shared_yaxes=True)
    zmax = max(float(np.nanmax(frame[value].to_numpy(dtype=float))) for frame in frames.values())
    for col, (name, frame) in enumerate(frames.items(), start=1):
        rows = frame[["sublayer", "sublayer_label"]].drop_duplicates().sort_values("sublayer")
        cols = frame[["source", "source_label"]].drop_duplicates().sort_values("source")
        z = np.full((len(rows), len(cols)), np.nan)  # [consumer sublayers, sources]
        r = frame["sublayer"].map({s: i for i, s in enumerate(rows["sublayer"])}).to_numpy()
        c = frame["source"].map({s: j for j, s in enumerate(cols["source"])}).to_numpy()
        z[r, c] = frame[value].to_numpy(dtype=float)
        fig.add_trace(go.Heatmap(
            z=z, x=cols["source_label"].tolist(), y=rows["sublayer_label"].tolist(), colorscale=SEQUENTIAL,
            zmin=0.0, zmax=zmax, showscale=col == len(frames), colorbar=dict(title="weight"),
            hovertemplate=f"{name}<br>%{{y}} ← %{{x}}: %{{z:.4f}}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        fig.update_xaxes(title_text="source", tickangle=90, row=1, col=col)
    fig.update_yaxes(title_text="consuming sublayer", row=1, col=1)
    return base_layout(fig, title, height=520)
