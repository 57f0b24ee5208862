"""Signal growth: RMS of hidden states and outputs against depth for several runs, with percentile bands over
tokens, and the ratio to a baseline run."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import QUANTITY_NAMES, base_layout, empty_figure, rgba, run_colour


def signal_vs_depth(profiles: dict[str, pd.DataFrame], quantity: str = "output_rms", baseline: str | None = None,
                    bands: bool = True, title: str | None = None) -> go.Figure:
    """profiles: run name -> frame (label, p5, p25, p50, p75, p95, mean) of one RMS quantity per sublayer.
    Top: median over tokens (line), 25-75 and 5-95 percentile bands, log scale. Bottom (when `baseline` is one of
    the runs): ratio of each run's median to the baseline's, matched by sublayer label."""
    colours = {name: run_colour(i) for i, name in enumerate(profiles)}  # a run's colour whatever is missing
    profiles = {k: v for k, v in profiles.items() if v is not None and len(v)}
    title = title if title is not None else f"{QUANTITY_NAMES.get(quantity, quantity)} against depth"
    if not profiles:
        return empty_figure(f"No run here recorded {quantity}.", title)
    ratio = baseline in profiles and len(profiles) > 1
    fig = make_subplots(rows=2 if ratio else 1, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.68, 0.32] if ratio else [1.0])
    order = []
    for frame in profiles.values():
        order += [l for l in frame["label"] if l not in order]
    centre = "p50" if "p50" in next(iter(profiles.values())) and profiles[next(iter(profiles))]["p50"].notna().any() else "mean"
    for i, (name, frame) in enumerate(profiles.items()):
        colour = colours[name]
        frame = frame[frame[centre].notna() | frame["mean"].notna()]  # e.g. no output at the final mixer
        x = frame["label"].tolist()
        has_bands = bands and "p5" in frame and frame["p5"].notna().any()
        if has_bands:
            for lo, hi, alpha, band in (("p5", "p95", 0.12, "5-95 %"), ("p25", "p75", 0.25, "25-75 %")):
                fig.add_trace(go.Scatter(x=x + x[::-1], y=list(frame[hi]) + list(frame[lo])[::-1], fill="toself",
                                         mode="lines", fillcolor=rgba(colour, alpha), line=dict(width=0), hoverinfo="skip",
                                         name=f"{name} {band}", legendgroup=name, showlegend=False), row=1, col=1)
        y = frame[centre] if frame[centre].notna().any() else frame["mean"]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name + (" (baseline)" if name == baseline else ""),
                                 legendgroup=name, line=dict(color=colour, width=2.5, dash="dash" if name == baseline else "solid"),
                                 hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>"), row=1, col=1)
    fig.update_yaxes(type="log", title_text=("median " if centre == "p50" else "mean ") + "RMS", tickformat=".2~g",
                     row=1, col=1)
    if ratio:
        base = profiles[baseline].set_index("label")
        for i, (name, frame) in enumerate(profiles.items()):
            if name == baseline:
                continue
            f = frame.set_index("label")
            common = [l for l in f.index if l in base.index]
            col = centre if centre in f and f[centre].notna().any() and base[centre].notna().any() else "mean"
            r = f.loc[common, col].to_numpy(dtype=float) / base.loc[common, col].to_numpy(dtype=float)
            fig.add_trace(go.Scatter(x=common, y=r, mode="lines+markers", name=f"{name} / {baseline}",
                                     line=dict(color=colours[name]), showlegend=False,
                                     hovertemplate=f"{name} / {baseline}<br>%{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=2, col=1)
        fig.add_hline(y=1.0, line=dict(color="#888", dash="dot", width=1), row=2, col=1)
        fig.update_yaxes(type="log", title_text="ratio to baseline", tickformat=".3~g", row=2, col=1)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order)
    fig.update_xaxes(title_text="sublayer", row=2 if ratio else 1, col=1)
    base_layout(fig, title, height=560 if ratio else 420)
    return fig
