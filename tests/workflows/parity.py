"""Parity of the house redesign (issue 14): what `depthscope analyze` writes and what every dashboard view draws on
the demo bundle, captured as plain data so that a later version of the code can be compared with it.

    python tests/workflows/parity.py capture OUT     write OUT/analyze/<run>/*.csv + summary.md, OUT/figures.json.gz
    python tests/workflows/parity.py compare A B     exit 1 and list what differs (numbers to float rounding)

tests/golden/parity holds the capture made before the redesign; tests/workflows/test_parity.py compares the code as
it is with it. Only public entry points are used (the `depthscope analyze` command, the dashboard's figure registry),
so the capture runs unchanged across a reorganisation of the modules behind them.
"""
from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

from demo_views import BASELINE, DEMO, GLOBAL, PER_RUN, RUN_KINDS, view  # tests/demo_views.py

PER_RUN = {**PER_RUN, "routing_plain": {}}  # the Routing page as it opens, no filter
ANALYZED = ("block_attnres", "full_attnres", "denseformer", "mhc", "recall_block_attnres", "residual")
RTOL, ATOL = 1e-6, 1e-9


def capture_analyze(out: Path) -> None:
    """`depthscope analyze RUN --vs residual` for each analysed demo run (the causal check from the bundle's
    checkpoints, as the command does it)."""
    for run in ANALYZED:
        target = out / "analyze" / run
        cmd = [str(Path(sys.executable).parent / "depthscope"), "analyze", str(DEMO / "runs" / run), "--out", str(target)]
        if run != BASELINE:
            cmd += ["--vs", str(DEMO / "runs" / BASELINE)]
        subprocess.run(cmd, check=True, capture_output=True)
        for parquet in target.glob("*.parquet"):  # the CSVs say the same in text
            parquet.unlink()


def capture_figures(out: Path) -> None:
    """Every registered view of the dashboard for each run kind, as Plotly JSON (data and layout)."""
    from depthscope.dashboard.runs import Catalogue
    from depthscope.dashboard.views import FIGURES

    catalogue = Catalogue(DEMO / "runs", background=False)
    figures = {}
    cases = [(run, name, params) for run in RUN_KINDS for name, params in PER_RUN.items()]
    cases += [(None, name, params) for name, params in GLOBAL.items()]
    for run, name, extra in cases:
        figure, params = view(run, name, extra)
        fig = FIGURES[figure].build(catalogue, params)
        figures[f"{run or 'all'}/{name}"] = json.loads(fig.to_json())
    with gzip.open(out / "figures.json.gz", "wt", encoding="utf-8") as f:
        json.dump(figures, f, sort_keys=True)


def capture(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    capture_analyze(out)
    capture_figures(out)


def _close(a, b, where: str, diffs: list[str]) -> None:
    """Structural equality, numbers to float rounding (Plotly's binary arrays compared as the numbers they hold)."""
    if len(diffs) > 20:
        return
    a, b = _typed_array(a), _typed_array(b)
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                diffs.append(f"{where}.{key}: only in {'after' if key not in a else 'before'}")
            else:
                _close(a[key], b[key], f"{where}.{key}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{where}: length {len(a)} before, {len(b)} after")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                _close(x, y, f"{where}[{i}]", diffs)
    elif _number(a) and _number(b):
        x, y = float(a), float(b)
        if not (math.isclose(x, y, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(x) and math.isnan(y))):
            diffs.append(f"{where}: {a!r} before, {b!r} after")
    elif a != b:
        diffs.append(f"{where}: {str(a)[:120]!r} before, {str(b)[:120]!r} after")


def _typed_array(value):
    """A Plotly typed array ({"dtype", "bdata"[, "shape"]}, base64) as {"shape", "values"}; anything else as is."""
    if not (isinstance(value, dict) and "bdata" in value and "dtype" in value):
        return value
    import base64

    import numpy as np

    values = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return {"shape": value.get("shape"), "values": values.astype(float).tolist()}


def _number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _csv_rows(path: Path) -> list[list[str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def compare(before: Path, after: Path) -> list[str]:
    """What differs between two captures, one line each (empty: the same)."""
    diffs: list[str] = []
    for folder in sorted((before / "analyze").iterdir()):
        other = after / "analyze" / folder.name
        names = {p.name for p in folder.iterdir()}
        other_names = {p.name for p in other.iterdir()} if other.is_dir() else set()
        for missing in sorted(names ^ other_names):
            diffs.append(f"analyze/{folder.name}/{missing}: only {'before' if missing in names else 'after'}")
        for name in sorted(names & other_names):
            where = f"analyze/{folder.name}/{name}"
            if name.endswith(".csv"):
                _close(_csv_rows(folder / name), _csv_rows(other / name), where, diffs)
            else:  # summary.md: the same words; numbers may differ in the last printed digit only
                a, b = (folder / name).read_text().split(), (other / name).read_text().split()
                _close(a, b, where, diffs)
    with gzip.open(before / "figures.json.gz", "rt", encoding="utf-8") as f:
        figures_before = json.load(f)
    with gzip.open(after / "figures.json.gz", "rt", encoding="utf-8") as f:
        figures_after = json.load(f)
    _close(figures_before, figures_after, "figures", diffs)
    return diffs


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "capture":
        capture(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        found = compare(Path(sys.argv[2]), Path(sys.argv[3]))
        print("\n".join(found) or "the same")
        sys.exit(1 if found else 0)
    else:
        print(__doc__)
        sys.exit(2)
