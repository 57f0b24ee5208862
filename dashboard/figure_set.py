"""The paper's figure set of a run against a baseline, in one call (`depthscope figures RUN --vs BASE --out DIR`).

  fig5b_output_magnitude    RMS of each sublayer's output against depth, run(s) and baseline     (paper Fig. 5b)
  fig5b_input_magnitude     RMS of each sublayer's input (the hidden state it reads)
  fig5c_gradient_magnitude  parameter-gradient norm per sublayer, run(s) and baseline           (paper Fig. 5c)
  fig5c_activation_gradient RMS of dLoss/dh per sublayer
  fig8_routing_<run>        token-averaged depth attention, pre-attention and pre-MLP panels    (paper Fig. 8)
  fig9_mixing               effective mixing matrices of several runs side by side              (paper Fig. 9)
  jumps, sinks              distance of each token's top source; depth sinks
  index.html                a contact sheet: every figure with its caption, to review them at a glance

Every figure is drawn by the dashboard's own builders (dashboard.views / dashboard.figures) through
dashboard.export, so it carries the print style, a JSON manifest and a caption file.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .export import Exported, caption, figure_bytes, manifest_for, render, write_exported
from .runs import Catalogue


@dataclass
class FigureSet:
    """What to draw. Run names are folders of one runs folder (the catalogue's root)."""

    run: str
    baseline: str
    others: list[str] = field(default_factory=list)  # more lines in the magnitude plots
    routing: list[str] = field(default_factory=list)  # more Fig. 8 heatmaps (the run's is always drawn)
    mixing: list[str] = field(default_factory=list)  # Fig. 9 panels (default: run and baseline)
    checkpoints: Path | None = None  # where Hyper-Connection runs' checkpoints are, when not recorded in the run
    fmt: str = "svg"
    style: str = "double"
    scale: str | None = None  # heatmap colour scale (figures.style.HEATMAP_SCALES); None: the default
    captions: bool = True


def _checkpoint_of(run_dir: Path, checkpoints: Path | None) -> Path:
    """The checkpoint a run was recorded from (its manifest's `checkpoint`, relative to the run), else
    checkpoints/<run name>."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    recorded = manifest.get("checkpoint")
    candidates = [(run_dir / recorded).resolve()] if recorded else []
    if checkpoints is not None:
        candidates.append(Path(checkpoints) / run_dir.name)
    for path in candidates:
        if (path / "checkpoint.json").is_file():
            return path
    raise FileNotFoundError(f"{run_dir.name}: Hyper-Connection mixing needs the model, and no checkpoint was "
                            f"found (looked in {', '.join(map(str, candidates)) or 'nothing'}; pass --checkpoints)")


def mixing_frames(runs: dict[str, str | Path], checkpoints: str | Path | None = None,
                  windows: int = 8) -> dict[str, pd.DataFrame]:
    """{name: tidy effective-mixing frame} of several runs (analyses.mixing.Mixing.frame()). Runs give M from their
    token-mean depth attention; Hyper-Connection runs do not record stream mixing, so theirs comes from the
    checkpoint they were recorded from (mixing_from_model on `windows` held-out windows of their corpus)."""
    from depthscope.analyses import mixing_from_model, mixing_from_run
    from depthscope.probe import open_run

    frames = {}
    for name, path in runs.items():
        run = open_run(path)
        if not run.mixer_kind.weights_give_mixing:
            import torch

            from depthscope.models import load_checkpoint
            from depthscope.models import load_corpus

            model, _ = load_checkpoint(_checkpoint_of(Path(path), Path(checkpoints) if checkpoints else None))
            seq_len = int(run.manifest.get("seq_len") or model.cfg.max_seq_len)
            inputs, _ = load_corpus(run.manifest.get("corpus") or "pydoc", seed=0).eval_batch(windows, seq_len)
            with torch.no_grad():
                frames[name] = mixing_from_model(model.eval(), inputs).frame()
        else:
            frames[name] = mixing_from_run(run).frame()
    return frames


def _unique(names) -> list[str]:
    out = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


def plan(spec: FigureSet) -> list[tuple[str, str, dict]]:
    """(file stem, view name of dashboard.views.FIGURES, view parameters) of every single-view figure."""
    versus = {"run": spec.run, "baseline": spec.baseline, "others": ",".join(spec.others)}
    scale = {"scale": spec.scale} if spec.scale else {}
    items = [
        ("fig5b_output_magnitude", "signal", {**versus, "quantity": "output_rms"}),
        ("fig5b_input_magnitude", "signal", {**versus, "quantity": "input_rms"}),
        ("fig5c_gradient_magnitude", "gradients", {**versus, "grad": "param"}),
        ("fig5c_activation_gradient", "gradients", {**versus, "grad": "activation"}),
    ]
    items += [(f"fig8_routing_{name}", "routing", {"run": name, **scale})
              for name in _unique([spec.run, *spec.routing])]
    items += [("jumps", "jumps", {"run": spec.run}), ("sinks", "sinks", {"run": spec.run})]
    return items


def _mixing(cat: Catalogue, spec: FigureSet) -> Exported:
    from .figures import mixing_matrices

    names = _unique(spec.mixing or [spec.run, spec.baseline])
    frames = mixing_frames({n: cat.resolve(n) for n in names}, spec.checkpoints)
    fig = mixing_matrices(frames, scale=spec.scale)
    runs = {"mixing": [{"id": n, "path": str(cat.resolve(n))} for n in names]}
    manifest = manifest_for(fig, "fig9_mixing", "effective depth-mixing matrix M, row-normalised (analyses.mixing; "
                            "Hyper-Connection runs from their checkpoint's taps)", runs,
                            {"runs": ",".join(names), "scale": spec.scale}, spec.fmt, spec.style, True,
                            "every recorded token (Hyper-Connection runs: held-out windows of their corpus)")
    manifest["file"] = f"fig9_mixing.{spec.fmt}"
    return Exported(manifest["file"], figure_bytes(fig, spec.fmt, spec.style, matrix=True), manifest,
                    caption(manifest))


def write_figure_set(runs_root: str | Path, spec: FigureSet, out: str | Path, progress=None) -> list[Path]:
    """Draw the set into `out` (figures, manifests, captions, index.html); returns the figure paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cat = Catalogue(runs_root, background=False)
    items = plan(spec)
    written: list[tuple[Path, Exported]] = []
    steps = len(items) + 1
    for i, (stem, view, params) in enumerate(items):
        if progress:
            progress(i, steps, stem)
        result = render(cat, view, params, spec.fmt, spec.style)
        result.name = f"{stem}.{spec.fmt}"
        result.manifest["file"] = result.name
        written.append((write_exported(result, out, spec.captions), result))
    if progress:
        progress(len(items), steps, "fig9_mixing")
    result = _mixing(cat, spec)
    written.append((write_exported(result, out, spec.captions), result))
    (out / "index.html").write_text(contact_sheet(written, spec), encoding="utf-8")
    if progress:
        progress(steps, steps, "index.html")
    return [p for p, _ in written]


def contact_sheet(written: list[tuple[Path, Exported]], spec: FigureSet) -> str:
    """One HTML page showing every figure at its print width with its caption."""
    width = {"single": 3.4, "double": 7.0}.get(spec.style, 7.0)
    cells = []
    for path, result in written:
        src = html.escape(path.name)
        body = (f'<img src="{src}" style="width:{width}in" alt="{src}">' if spec.fmt in ("svg", "png")
                else f'<embed src="{src}" type="application/pdf" style="width:{width}in;height:{width * 0.8}in">')
        cells.append(f'<figure>{body}<figcaption><b>{src}</b>: {html.escape(result.caption)}</figcaption></figure>')
    others = f" (with {', '.join(spec.others)})" if spec.others else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>depthscope figures</title><style>"
        "body{font-family:DejaVu Sans,Arial,sans-serif;margin:2em;color:#222}"
        "figure{display:inline-block;vertical-align:top;margin:0 2em 2em 0;max-width:" f"{width + 0.3}in" "}"
        "figcaption{font-size:9pt;margin-top:.5em}img{border:1px solid #ddd}</style></head><body>"
        f"<h1>Figures: {html.escape(spec.run)} against {html.escape(spec.baseline)}{html.escape(others)}</h1>"
        f"<p>{spec.style} column ({width} in), {spec.fmt}. Each figure has a manifest (.json) and a caption "
        "(.txt) beside it.</p>" + "\n".join(cells) + "</body></html>\n")
