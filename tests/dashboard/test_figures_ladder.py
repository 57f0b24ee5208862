"""The scale-ladder figure (dashboard/figures/ladder.py) on small known data."""
from __future__ import annotations

import pandas as pd
import pytest

from depthscope.dashboard.figures import ladder_lines


def test_ladder_lines_draw_each_corpus_with_its_intervals_seeds_and_the_threshold():
    table = pd.DataFrame(dict(corpus=["pydoc", "pydoc", "bible"], params=[1e5, 4e5, 1e5], value=[-0.2, -0.1, -0.05],
                              ci_low=[-0.25, -0.12, -0.1], ci_high=[-0.15, -0.08, 0.0]))
    seeds = pd.DataFrame(dict(corpus=["pydoc"] * 4 + ["bible"] * 2, params=[1e5, 1e5, 4e5, 4e5, 1e5, 1e5],
                              value=[-0.21, -0.19, -0.11, -0.09, -0.07, -0.03]))
    fig = ladder_lines(table, "locality_excess", "Locality", seeds=seeds, threshold=0.0, threshold_text="paper: above")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["pydoc", "bible"]
    pydoc = lines[0]
    assert list(pydoc.y) == [-0.2, -0.1]
    assert list(pydoc.error_y.array) == pytest.approx([0.05, 0.02]) and list(pydoc.error_y.arrayminus) == pytest.approx([0.05, 0.02])
    assert sum(len(t.y) for t in fig.data if t.mode == "markers") == 6  # every seed drawn
    assert fig.layout.xaxis.type == "log" and fig.layout.shapes[0].y0 == 0.0
    assert "No ladder results" in ladder_lines(table.iloc[:0], "y", "t").layout.annotations[0].text
