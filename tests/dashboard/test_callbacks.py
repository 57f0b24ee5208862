"""Callbacks called as functions (the views behind them; the guard: test_panels), export and the CLI."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from depthscope.dashboard import views
from depthscope.dashboard.components import make_search, parse_search


PARAMS = {"run": "full", "baseline": "residual", "others": "block", "cell": "4,1", "token": "70", "other": "block",
          "training": "/ckpt/train", "step": "100"}


@pytest.mark.parametrize("name", sorted(views.FIGURES))
def test_every_view_draws_a_figure(catalogue, name):
    fig = views.FIGURES[name].build(catalogue, dict(PARAMS))
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text or fig.layout.annotations


def test_routing_view_filters_and_titles(catalogue):
    fig, result = views.routing(catalogue, {"run": "block", "regex": "[A-Z]"})
    assert result.tokens > 0 and "text ~ /[A-Z]/" in fig.layout.title.text
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert set(heat[0].x) <= {"emb", "block1", "partial", "block2"}  # the run's own source labels


def test_url_round_trip():
    params = {"run": "a/b", "regex": "[A-Z]+ x", "start": 5, "empty": ""}
    assert parse_search(make_search(params)) == {"run": "a/b", "regex": "[A-Z]+ x", "start": "5"}


@pytest.mark.parametrize("fmt", ["svg", "pdf", "png"])
def test_export_matrix_is_true_vector_with_manifest(catalogue, runs_dir, fmt, tmp_path, tree_state):
    from depthscope.dashboard.export import export_files

    before = tree_state(runs_dir)
    (path,) = export_files(catalogue, ["routing"], {"run": "block"}, fmt, "single", tmp_path)
    data = path.read_bytes()
    if fmt == "svg":
        text = data.decode()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "<image" not in text  # no embedded bitmap: every cell a vector path
        assert "block1" in text and "partial" in text  # the run's labels as text
    elif fmt == "pdf":
        assert data.startswith(b"%PDF") and b"/Subtype /Image" not in data
    else:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["runs"]["run"]["id"] == "block" and manifest["statistic"] and manifest["code_version"]
    assert manifest["style"] == "single" and manifest["width_in"] == 3.4
    assert tree_state(runs_dir) == before  # nothing written into the runs


def test_cli_export_lines_through_kaleido(runs_dir, tmp_path, capsys):
    from depthscope.cli import main

    out = tmp_path / "figs"
    rc = main(["export", str(runs_dir / "full"), "--baseline", str(runs_dir / "residual"),
               "--figures", "signal,routing", "--format", "svg", "--style", "double", "--out", str(out)])
    assert rc == 0
    svg = (out / "signal.svg").read_text()
    assert "<svg" in svg and "ratio to" in svg and "baseline" in svg  # the axis title may wrap at print size
    assert json.loads((out / "signal.svg.json").read_text())["renderer"] == "plotly + kaleido"
    assert main(["export", str(runs_dir / "broken"), "--figures", "routing", "--out", str(out)]) == 1
    with pytest.raises(SystemExit):
        main(["export", str(runs_dir / "full"), "--figures", "nope", "--out", str(out)])


def test_cli_serve_is_registered():
    from depthscope.cli import build_parser

    args = build_parser().parse_args(["serve", "--runs", "x"])
    assert args.host == "127.0.0.1" and args.port == 8050
