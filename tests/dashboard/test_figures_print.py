"""Print style, heatmap colour scales, tick choice, manifests and captions, and `depthscope figures`."""
from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from depthscope.dashboard import figures as F
from depthscope.dashboard.figures.style import (HEATMAP_SCALES, category_ticks, log_ticks, text_width,
                                                warped_colorscale)


def skewed_frame():
    """Three sublayers whose embedding weight (0.7-1.0) dwarfs the rest (0.02-0.2), as in the demo runs."""
    rows = [(0, "attn1", 0, "emb", 1.0), (1, "mlp1", 0, "emb", 0.9), (1, "mlp1", 1, "attn1", 0.1),
            (2, "attn2", 0, "emb", 0.7), (2, "attn2", 1, "attn1", 0.2), (2, "attn2", 2, "mlp1", 0.02 + 0.08)]
    f = pd.DataFrame(rows, columns=["slot", "label", "source_index", "source", "mean"])
    f["count"], f["std"] = 10, 0.1
    return f


def _colour_at(scale, u):
    from plotly.colors import find_intermediate_color, unlabel_rgb

    stops = [(float(p), c) for p, c in scale]
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if p0 <= u <= p1:
            t = 0 if p1 == p0 else (u - p0) / (p1 - p0)
            return np.asarray(find_intermediate_color(unlabel_rgb(c0), unlabel_rgb(c1), t))
    return np.asarray(unlabel_rgb(stops[-1][1]))


def test_power_scale_spends_colours_on_small_weights_and_keeps_true_values():
    fig = F.routing_heatmap(skewed_frame(), "t")  # the default scale
    axis = fig.layout.coloraxis
    assert fig.layout.meta["scale"] == "power" and axis.cmin == pytest.approx(0.1) and axis.cmax == 1.0
    heat = fig.data[0]
    assert np.nanmax(np.asarray(heat.z, dtype=float)) == 1.0  # true values, not transformed
    scale = [(s[0], s[1]) for s in axis.colorscale]
    lin = warped_colorscale("Cividis", "linear", 0.1, 1.0)
    assert lin == "Cividis"
    # 0.2 and 0.1 (one-ninth of the range apart) differ far more in colour than on a linear scale
    u = (0.2 - 0.1) / 0.9
    power_gap = np.abs(_colour_at(scale, u) - _colour_at(scale, 0.0)).sum()
    linear = [(float(p), c) for p, c in zip(np.linspace(0, 1, 11), __import__("plotly.colors").colors.sample_colorscale("Cividis", list(np.linspace(0, 1, 11))))]
    linear_gap = np.abs(_colour_at(linear, u) - _colour_at(linear, 0.0)).sum()
    assert power_gap > 2 * linear_gap


def test_row_scale_divides_each_row_by_its_peak_and_hovers_the_true_weight():
    fig = F.routing_heatmap(skewed_frame(), "t", scale="row", split=False)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.allclose(np.nanmax(z, axis=1), 1.0)
    assert z[2, 1] == pytest.approx(0.2 / 0.7)
    custom = np.asarray(fig.data[0].customdata, dtype=float)
    assert custom[2, 1, 4] == pytest.approx(0.2) and "customdata[4]" in fig.data[0].hovertemplate
    assert "row maximum" in fig.layout.coloraxis.colorbar.title.text


def test_log_scale_and_unknown_scale():
    fig = F.routing_heatmap(skewed_frame(), "t", scale="log")
    assert fig.layout.meta["scale"] == "log" and len(fig.layout.coloraxis.colorscale) > 10
    with pytest.raises(ValueError, match="scale"):
        F.routing_heatmap(skewed_frame(), "t", scale="cubic")
    assert set(HEATMAP_SCALES) == {"power", "log", "row", "linear"}


def test_block_attnres_rows_are_ruled_where_a_block_begins():
    rows = [(0, "attn1", 0, "emb", 1.0), (1, "attn2", 0, "emb", 0.5), (1, "attn2", 1, "partial", 0.5),
            (2, "attn3", 0, "emb", 0.4), (2, "attn3", 1, "block1", 0.6), (3, "attn4", 0, "emb", 0.3),
            (3, "attn4", 1, "block1", 0.3), (3, "attn4", 2, "partial", 0.4)]
    f = pd.DataFrame(rows, columns=["slot", "label", "source_index", "source", "mean"])
    fig = F.routing_heatmap(f, "t")
    assert [s.y0 for s in fig.layout.shapes] == [1.5]  # between attn2 and attn3, where block1 completes
    assert not F.routing_heatmap(skewed_frame(), "t").layout.shapes


def test_category_ticks_keep_all_level_then_turn_then_thin():
    labels = [f"attn{i}" if k == 0 else f"mlp{i}" for i in range(1, 9) for k in (0, 1)]
    keep, angle = category_ticks(labels, length=16 * 40, size=8)
    assert keep == list(range(16)) and angle == 0
    keep, angle = category_ticks(labels, length=16 * 12, size=8)
    assert keep == list(range(16)) and angle == 90
    keep, angle = category_ticks(labels, length=16 * 4, size=8)
    assert angle == 90 and keep[1] - keep[0] >= 3 and (keep[1] - keep[0]) % 2 == 0
    # what is kept fits: labels of one line each, one per slot of `step` cells
    assert (keep[1] - keep[0]) * 4 >= 1.25 * 8
    assert text_width("attn12", 8) > text_width("ii", 8)


def test_log_ticks_drop_minor_labels_when_short():
    assert log_ticks(0.01, 2.0, length=400, size=10) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    short = log_ticks(0.01, 2.0, length=60, size=10)
    assert short == [0.01, 0.1, 1.0]
    sparse = log_ticks(1e-6, 1e3, length=50, size=10)  # nine decades on a short axis: every k-th power of ten
    assert 2 <= len(sparse) <= 3 and all(np.log10(t) == round(np.log10(t)) for t in sparse)
    assert log_ticks(0, 1, 100, 10) == []


def test_export_manifest_names_filter_scale_and_writes_a_caption(catalogue, tmp_path):
    from depthscope.dashboard.export import export_files

    params = {"run": "block", "start": "0", "stop": "300", "regex": "[a-z]", "scale": "log"}
    (path,) = export_files(catalogue, ["routing"], params, "svg", "single", tmp_path, captions=True)
    manifest = json.loads((tmp_path / "routing.svg.json").read_text())
    assert manifest["filter"] == {"description": "tokens 0..300, text ~ /[a-z]/", "start": "0", "stop": "300",
                                  "regex": "[a-z]"}
    assert manifest["runs"]["run"]["id"] == "block" and manifest["colour_scale"].startswith("log")
    assert manifest["width_in"] == 3.4 and manifest["font_pt"] == [7.0, 8.0]
    text = (tmp_path / "routing.svg.txt").read_text()
    assert "tokens 0..300" in text and "run block" in text and "log" in text
    (path,) = export_files(catalogue, ["signal"], {"run": "full", "baseline": "residual"}, "svg", "double", tmp_path)
    manifest = json.loads(path.with_suffix(".svg.json").read_text())
    assert manifest["runs"]["baseline"]["id"] == "residual" and manifest["filter"]["description"] == "all tokens"


def test_pdf_embeds_truetype_fonts(catalogue, tmp_path):
    from depthscope.dashboard.export import export_files

    (path,) = export_files(catalogue, ["routing"], {"run": "full"}, "pdf", "double", tmp_path)
    data = path.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType (Type 42), not Type 3 bitmaps
    assert json.loads((tmp_path / "routing.pdf.json").read_text())["pdf_fonts"] == "TrueType (Type 42)"


def test_bad_scale_in_a_view_is_a_clear_error(catalogue, tmp_path):
    from depthscope.dashboard.data import FilterError
    from depthscope.dashboard.export import export_files

    with pytest.raises(FilterError, match="scale must be one of"):
        export_files(catalogue, ["routing"], {"run": "block", "scale": "cubic"}, "svg", "single", tmp_path)


def test_cli_figures_writes_the_set_with_manifests_captions_and_a_contact_sheet(runs_dir, tmp_path, capsys):
    from depthscope.cli import main

    out = tmp_path / "figs"
    rc = main(["figures", str(runs_dir / "block"), "--vs", str(runs_dir / "residual"), "--others", "full",
               "--mixing", "residual", "full", "block", "--style", "single", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    names = {p.rsplit("/", 1)[1] for p in printed}
    assert {"fig5b_output_magnitude.svg", "fig5c_gradient_magnitude.svg", "fig8_routing_block.svg",
            "fig9_mixing.svg", "jumps.svg", "sinks.svg", "index.html"} <= names
    sheet = (out / "index.html").read_text()
    for name in names - {"index.html"}:
        assert (out / name).stat().st_size > 1000 and f'src="{name}"' in sheet
        manifest = json.loads((out / (name + ".json")).read_text())
        assert manifest["file"] == name and manifest["style"] == "single"
        assert html.escape((out / (name + ".txt")).read_text().strip()) in sheet  # the caption under it
    mixing = json.loads((out / "fig9_mixing.svg.json").read_text())
    assert [r["id"] for r in mixing["runs"]["mixing"]] == ["residual", "full", "block"]
    signal = json.loads((out / "fig5b_output_magnitude.svg.json").read_text())
    assert signal["runs"]["baseline"]["id"] == "residual" and [r["id"] for r in signal["runs"]["others"]] == ["full"]
    assert "against the baseline residual" in (out / "fig5b_output_magnitude.svg.txt").read_text()


def test_cli_figures_bad_input(runs_dir, tmp_path):
    from depthscope.cli import main

    with pytest.raises(SystemExit) as err:  # a baseline that is not a run of RUN's folder: usage error
        main(["figures", str(runs_dir / "block"), "--vs", str(tmp_path), "--out", str(tmp_path / "o")])
    assert err.value.code == 2
    assert main(["figures", str(runs_dir / "broken"), "--vs", "residual", "--out", str(tmp_path / "o")]) == 1


def test_scale_choices_of_the_command_are_the_builders():
    from depthscope.commands import figures as figures_cmd

    parser = __import__("argparse").ArgumentParser()
    figures_cmd.add_arguments(parser)
    scale = next(a for a in parser._actions if a.dest == "scale")
    assert tuple(scale.choices) == HEATMAP_SCALES


def test_print_figure_puts_the_legend_above_and_keeps_the_apps_figure():
    from depthscope.dashboard.print_lines import print_figure

    f = pd.DataFrame({"label": ["attn1", "mlp1"], "mean": [1.0, 4.0], "lo": [0.5, 3.0], "hi": [1.5, 5.0]})
    app = F.gradients_vs_depth({"a": f, "b": f}, baseline="b")
    printed = print_figure(app, "single")
    assert printed.layout.width == int(3.4 * 96) and printed.layout.legend.y > 1
    assert printed.layout.legend.orientation == "h" and not printed.layout.title.text
    assert printed.data[0].line.width < app.data[0].line.width  # thin lines in print
    assert app.layout.width is None  # the dashboard's figure is untouched
    assert isinstance(printed, go.Figure)
