"""Static export of the app's figures for papers: SVG, PDF or PNG, single (3.4 in) or double (7 in) column.

Line plots are laid out for print and drawn by kaleido (dashboard.print_lines); matrix figures (heatmaps:
routing, compare, tokens, mixing) are redrawn from the very Plotly figure the app shows with matplotlib
(dashboard.print_matrix, true vector cells). Both use the print styles of figures.style.PRINT_STYLES: fonts of
7-9 pt at the printed size, TrueType (Type 42) fonts in PDF, colour-blind-safe colours, thin lines. Beside each
file a JSON manifest names the run(s), baseline, filter, statistic, colour scale, parameters and code version,
and optionally a caption file (NAME.FORMAT.txt) says the same in a sentence or two.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from .figures.style import PRINT_STYLES
from .print_lines import line_bytes
from .print_matrix import matrix_bytes, plain as _plain
from .runs import Catalogue
from .views import FIGURES, flt

FORMATS = ("svg", "pdf", "png")
STYLES = tuple(PRINT_STYLES)
FILTER_KEYS = ("start", "stop", "doc", "regex")


class ExportError(ValueError):
    """A figure, format or style the exporter does not know, or a view that cannot be drawn."""


def figure_bytes(fig: go.Figure, fmt: str, style: str, matrix: bool = False, title: bool = False) -> bytes:
    """Any figure (a builder's output) as `fmt` bytes: heatmaps through matplotlib when `matrix`, else kaleido."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if style not in PRINT_STYLES:
        raise ExportError(f"unknown style {style!r}; choose from {', '.join(PRINT_STYLES)}")
    if matrix and any(isinstance(t, go.Heatmap) for t in fig.data):
        return matrix_bytes(fig, fmt, style, title=title)
    return line_bytes(fig, fmt, style, title=title)


def caption(manifest: dict) -> str:
    """A figure caption from its manifest: what is drawn, of which runs, over which tokens, on what scale."""
    runs = manifest.get("runs") or {}
    parts = [manifest.get("title") or manifest.get("figure", "")]
    parts[0] = parts[0].replace("\n", "; ")
    who = []
    if "run" in runs:
        who.append(f"run {runs['run']['id']}")
    for key in ("other", "others", "mixing"):
        if key in runs:
            ids = runs[key] if isinstance(runs[key], list) else [runs[key]]
            who.append(("beside " if who else "") + ", ".join(r["id"] for r in ids))
    if "baseline" in runs:
        who.append(f"against the baseline {runs['baseline']['id']}")
    text = parts[0].rstrip(".") + "."
    if manifest.get("statistic"):
        text += f" {manifest['statistic'][0].upper()}{manifest['statistic'][1:]}"
        text += (" of " + ", ".join(who)) if who else ""
        text += "."
    filt = (manifest.get("filter") or {}).get("description")
    if filt:
        text += f" Tokens: {filt}."
    scale = manifest.get("colour_scale")
    if scale:
        text += f" Colour scale: {scale}."
    text += f" depthscope {manifest.get('code_version', '')}.".rstrip()
    return text


def _scale_text(fig: go.Figure) -> str | None:
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else None
    if not meta or "scale" not in meta:
        return None
    scale = meta["scale"]
    return {"power": f"power (colours spent as value^{meta.get('gamma', 0.5):g}; the colour bar shows true values)",
            "log": "log (the colour bar shows true values)", "row": "each row divided by its largest value",
            "linear": "linear"}.get(scale, scale)


# ------------------------------------------------------------------------------------------------ API


@dataclass
class Exported:
    name: str  # file name (figure.format)
    data: bytes
    manifest: dict
    caption: str = field(default="")


def manifest_for(fig: go.Figure, figure: str, statistic: str, runs: dict, parameters: dict, fmt: str, style: str,
                 matrix: bool, filter_description: str | None = None) -> dict:
    """The manifest of one drawn figure (render's, and the figure set's figures that are no single view)."""
    from depthscope.probe import code_version

    st = PRINT_STYLES[style]
    manifest = {
        "figure": figure,
        "file": f"{figure}.{fmt}",
        "statistic": statistic,
        "runs": runs,
        "filter": {"description": filter_description or "all tokens",
                   **{k: parameters[k] for k in FILTER_KEYS if parameters.get(k) not in (None, "")}},
        "parameters": {k: v for k, v in parameters.items() if v not in (None, "")},
        "colour_scale": _scale_text(fig) if matrix else None,
        "format": fmt,
        "style": style,
        "width_in": st.width_in,
        "font_pt": [st.tick_pt, st.font_pt],
        "pdf_fonts": "TrueType (Type 42)" if fmt == "pdf" else None,
        "renderer": "matplotlib (vector heatmap)" if matrix else "plotly + kaleido",
        "title": _plain(fig.layout.title.text),
        "code_version": code_version(),
    }
    return {k: v for k, v in manifest.items() if v is not None}


def _run_entry(cat: Catalogue, run_id: str) -> dict:
    try:
        return {"id": run_id, "path": str(cat.resolve(run_id)),
                "code_version": cat.open(run_id).manifest.get("code_version")}
    except Exception:  # the view drew without it (e.g. an empty figure): name it all the same
        return {"id": run_id}


def render(cat: Catalogue, figure: str, params: dict, fmt: str = "svg", style: str = "single",
           title: bool = False) -> Exported:
    """Draw figure `figure` of the view `params` as `fmt` bytes, with its manifest and caption."""
    if figure not in FIGURES:
        raise ExportError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if style not in PRINT_STYLES:
        raise ExportError(f"unknown style {style!r}; choose from {', '.join(PRINT_STYLES)}")
    spec = FIGURES[figure]
    fig = spec.build(cat, params)
    matrix = spec.matrix and any(isinstance(t, go.Heatmap) for t in fig.data)
    data = figure_bytes(fig, fmt, style, matrix=matrix, title=title)
    runs = {key: _run_entry(cat, params[key]) for key in ("run", "baseline", "other")
            if params.get(key) and key in spec.params}
    if params.get("others") and "others" in spec.params:
        runs["others"] = [_run_entry(cat, r) for r in str(params["others"]).split(",") if r]
    uses_filter = any(k in spec.params for k in FILTER_KEYS)
    manifest = manifest_for(fig, figure, spec.statistic, runs, {k: params.get(k) for k in spec.params}, fmt, style,
                            matrix, flt(params).describe() if uses_filter else None)
    return Exported(f"{figure}.{fmt}", data, manifest, caption(manifest))


def write_exported(result: Exported, out: Path, captions: bool = False) -> Path:
    """NAME.FORMAT, NAME.FORMAT.json (the manifest) and, with `captions`, NAME.FORMAT.txt into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / result.name
    path.write_bytes(result.data)
    (out / (result.name + ".json")).write_text(json.dumps(result.manifest, indent=1) + "\n", encoding="utf-8")
    if captions:
        (out / (result.name + ".txt")).write_text(result.caption + "\n", encoding="utf-8")
    return path


def export_files(cat: Catalogue, figures: list[str], params: dict, fmt: str, style: str, out: str | Path,
                 captions: bool = False, title: bool = False) -> list[Path]:
    """Write each figure and its manifest (NAME.FORMAT + NAME.FORMAT.json, + NAME.FORMAT.txt with `captions`)
    into `out`; returns the paths."""
    return [write_exported(render(cat, name, params, fmt, style, title), Path(out), captions) for name in figures]
