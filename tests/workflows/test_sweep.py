"""`depthscope sweep` at a tiny budget: every model is trained, tables carry seed intervals, figures are SVG."""
from __future__ import annotations

import pandas as pd

from depthscope.cli import main
from depthscope.sweep import block_sizes, width_for


def test_block_sizes_and_widths():
    assert block_sizes(16) == [1, 2, 4, 8, 16]
    assert block_sizes(6) == [1, 2, 4, 6]
    for depth in (2, 4, 8, 16):
        d = width_for(400_000, depth, 4)
        assert d % 8 == 0 and abs(12 * depth * d * d - 400_000) / 400_000 < 0.5


def test_sweep_cli_tiny(tmp_path):
    out = tmp_path / "sweep"
    status = main(["sweep", "--out", str(out), "--budget", "1024", "--seeds", "0,1", "--layers", "1",
                   "--d-model", "16", "--depths", "1,2", "--params", "6000", "--no-progress"])
    assert status == 0
    sizes = pd.read_csv(out / "block_size.csv")
    assert sorted(sizes[sizes.series == "block_attnres"].block_size) == [1, 2]
    assert (sizes.seeds == 2).all() and (sizes.loss_low <= sizes.loss).all() and (sizes.loss <= sizes.loss_high).all()
    assert (sizes.loss < 5.6).all()  # below the loss of a uniform guess over 256 bytes
    depth = pd.read_csv(out / "depth_width.csv")
    assert len(depth) == 4 and set(depth.series) == {"residual", "block_attnres"}
    for name in ("block_size.svg", "depth_width.svg"):
        text = (out / name).read_text()
        assert "<svg" in text and "</svg>" in text
