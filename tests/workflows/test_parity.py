"""The redesign changed no result: `depthscope analyze` on the demo runs (every table and summary.md) and every
dashboard view (Plotly data and layout) match the capture taken before it (tests/golden/parity), to float rounding."""
from __future__ import annotations

from pathlib import Path

from parity import capture, compare  # tests/workflows/parity.py (pytest puts this folder on sys.path)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "parity"


def test_analyze_tables_and_dashboard_views_match_the_capture_before_the_redesign(tmp_path):
    capture(tmp_path)
    diffs = compare(GOLDEN, tmp_path)
    assert not diffs, f"{len(diffs)} differences from the capture before the redesign:\n" + "\n".join(diffs[:20])


def test_the_comparison_sees_a_changed_number(tmp_path):
    import shutil

    shutil.copytree(GOLDEN, tmp_path / "after")
    table = tmp_path / "after" / "analyze" / "block_attnres" / "routing.csv"
    lines = table.read_text().splitlines()
    cells = lines[1].split(",")
    number = next(i for i, c in enumerate(cells) if c.replace(".", "", 1).replace("-", "", 1).isdigit() and "." in c)
    cells[number] = str(float(cells[number]) * 1.001 + 1e-6)
    table.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    diffs = compare(GOLDEN, tmp_path / "after")
    assert len(diffs) == 1 and "routing.csv" in diffs[0]
