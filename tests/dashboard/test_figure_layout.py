"""Exported figures are printable: at single and double column width, no two text labels overlap and no text
leaves the figure. Every figure of the export registry is drawn for each run kind of the demo bundle (against the
residual baseline, with a filter, a clicked cell and token), plus the run-independent ones (evolution, gradient
uniformity over checkpoints), the paper's Fig. 9 set over all five mixers, the causal-ablation scatter and the
two sweep plots of the bundle; each SVG is laid out by Chromium and its text boxes measured
(tests/dashboard/text_boxes.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from demo_views import DEMO, GLOBAL, PER_RUN, RUN_KINDS, view  # tests/demo_views.py
from text_boxes import Measurer  # tests/dashboard/text_boxes.py (pytest puts this folder on sys.path)

STYLES = ("single", "double")
# The causal source ablation takes minutes per run on a CPU: its builder draws the bundle's own tables
# (assets/demo/analysis/<run>/causal.parquet, as depthscope.causal_check.source_ablation returns them).
ABLATION_RUNS = ("full_attnres", "block_attnres")
CASES = ([(run, fig, style) for run in RUN_KINDS for fig in PER_RUN for style in STYLES]
         + [(None, fig, style) for fig in GLOBAL for style in STYLES]
         + [(run, "ablation", style) for run in ABLATION_RUNS for style in STYLES]
         + [(None, "mixing", style) for style in STYLES]
         + [(None, sweep, style) for sweep in ("sweep_block_size", "sweep_depth_width") for style in STYLES])

pytestmark = pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromedriver")


@pytest.fixture(scope="module")
def measurer():
    m = Measurer()
    yield m
    m.close()


@pytest.fixture(scope="module")
def demo_catalogue():
    from depthscope.dashboard.runs import Catalogue

    return Catalogue(DEMO / "runs", background=False)


@pytest.fixture(scope="module")
def mixing_set():
    """The five mixers' effective mixing matrices (the bundle's Fig. 9): recorded runs where they can give it, the
    mHC model (streams are not recorded) from its checkpoint."""
    from depthscope.dashboard.figure_set import mixing_frames

    return mixing_frames({name: DEMO / "runs" / name for name in RUN_KINDS}, checkpoints=DEMO / "checkpoints")


def _svg(demo_catalogue, mixing_set, run, figure, style, out: Path) -> Path:
    from depthscope.dashboard import export

    if figure == "mixing":
        from depthscope.dashboard.figures import mixing_matrices

        data = export.figure_bytes(mixing_matrices(mixing_set), "svg", style, matrix=True)
    elif figure.startswith("sweep_"):  # as depthscope.sweep draws them, from the bundle's sweep tables
        import pandas as pd

        from depthscope.dashboard.figures import sweep_lines

        if figure == "sweep_block_size":
            table = pd.read_csv(DEMO.parent / "sweep" / "block_size.csv")
            base = table[table.series == "residual"]["loss"]
            fig = sweep_lines(table[table.series != "residual"], "block_size", "sublayers per block S (1 = Full AttnRes)",
                              "Block size sweep", log_x=True, baseline=float(base.iloc[0]))
        else:
            table = pd.read_csv(DEMO.parent / "sweep" / "depth_width.csv")
            fig = sweep_lines(table, "n_layers", "transformer blocks (width shrinks to keep parameters fixed)",
                              "Depth against width", log_x=True)
        data = export.figure_bytes(fig, "svg", style)
    elif figure == "ablation":
        import pandas as pd

        from depthscope.dashboard.figures import ablation_vs_mass

        table = pd.read_parquet(DEMO / "analysis" / run / "causal.parquet")
        table = table[table["family"].str.startswith("source:")].copy()
        table["source_label"], table["mean_share"] = table["family"].str.slice(len("source:")), table["mass"]
        data = export.figure_bytes(ablation_vs_mass(table), "svg", style)
    else:
        name, params = view(run, figure, PER_RUN[figure] if figure in PER_RUN else GLOBAL[figure])
        data = export.render(demo_catalogue, name, params, "svg", style).data
    path = out / f"{run}-{figure}-{style}.svg"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("run,figure,style", CASES, ids=[f"{r or 'all'}-{f}-{s}" for r, f, s in CASES])
def test_no_text_overlaps_or_leaves_the_figure(measurer, demo_catalogue, mixing_set, run, figure, style, tmp_path):
    layout = measurer.layout(_svg(demo_catalogue, mixing_set, run, figure, style, tmp_path))
    assert layout.texts, "no text measured: the SVG did not load"
    overlaps, outside = layout.overlaps(), layout.outside()
    assert not overlaps, f"{len(overlaps)} overlapping label pairs, e.g. {overlaps[:4]}"
    assert not outside, f"{len(outside)} labels leave the figure, e.g. {outside[:4]}"
