"""Export time per figure, this working tree beside a reference commit, measured in one run.

Each side runs in its own process over the demo bundle (assets/demo/runs): it draws every figure once (warm-up:
kaleido's Chromium starts, the runs' aggregates are computed), then times `depthscope.dashboard.export.render`
of each figure `--repeats` times and keeps the median. The reference side imports the package from
`git archive REF` unpacked into a temporary folder (same layout as the installed namespace), so both sides read
the same runs on the same machine at the same time. Printed: seconds per figure, both sides and their ratio.

    python bench/figures.py                  # against the commit before issue 13's changes
    python bench/figures.py --ref HEAD~3 --repeats 5 --style double --format pdf
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "assets" / "demo" / "runs"
DEFAULT_REF = "ea6c6d6"  # the tree before issue 13 (figures for print)
# package folder in the repository -> folder inside the `depthscope` namespace
LAYOUT = {"depthscope": "", "models": "models", "probe": "probe", "analyses": "analyses", "dashboard": "dashboard"}
CASES = [
    ("routing", {"run": "block_attnres", "start": "0", "stop": "3000"}),
    ("routing", {"run": "full_attnres"}),
    ("signal", {"run": "block_attnres", "baseline": "residual", "others": "full_attnres", "quantity": "output_rms"}),
    ("gradients", {"run": "block_attnres", "baseline": "residual", "grad": "param"}),
    ("jumps", {"run": "block_attnres"}),
    ("sinks", {"run": "full_attnres"}),
    ("long_range", {"run": "block_attnres"}),
    ("tokens", {"run": "block_attnres", "wlen": "400"}),
    ("compare", {"run": "block_attnres", "other": "full_attnres"}),
]


def package_from(ref: str, into: Path) -> Path:
    """Unpack the package folders of commit `ref` as into/depthscope/... (importable with PYTHONPATH=into)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *LAYOUT], check=True, capture_output=True).stdout
    src = into / "src"
    src.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    pkg = into / "pkg" / "depthscope"
    pkg.parent.mkdir(parents=True)
    (src / "depthscope").rename(pkg)
    for folder, target in LAYOUT.items():
        if target:
            (src / folder).rename(pkg / target)
    return into / "pkg"


def measure(fmt: str, style: str, repeats: int) -> dict:
    """In this process: seconds per figure (median of `repeats` after one warm-up draw)."""
    import statistics

    from depthscope.dashboard.export import render
    from depthscope.dashboard.runs import Catalogue

    cat = Catalogue(RUNS, background=False)
    out = {}
    for figure, params in CASES:
        key = f"{figure} ({params['run']})"
        render(cat, figure, params, fmt, style)  # warm: aggregates, kaleido, fonts
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            render(cat, figure, params, fmt, style)
            times.append(time.perf_counter() - t0)
        out[key] = statistics.median(times)
    return out


def side(pythonpath: str | None, args) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", "--format", args.format, "--style", args.style,
           "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default=DEFAULT_REF, help="commit to compare against (default: %(default)s)")
    parser.add_argument("--format", default="svg", choices=("svg", "pdf", "png"))
    parser.add_argument("--style", default="single", choices=("single", "double"))
    parser.add_argument("--repeats", type=int, default=5, help="timed draws per figure (median kept)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import depthscope

        print(f"# {depthscope.__file__}", file=sys.stderr)
        print(json.dumps(measure(args.format, args.style, args.repeats)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        before = side(str(package_from(args.ref, Path(tmp))), args)
    after = side(None, args)
    print(f"export time per figure, {args.format} {args.style} column, median of {args.repeats} warm draws")
    print(f"{'figure':<28}{args.ref[:10]:>12}{'this tree':>12}{'ratio':>8}")
    for key in before:
        b, a = before[key], after.get(key, float("nan"))
        print(f"{key:<28}{b:>11.3f}s{a:>11.3f}s{a / b:>8.2f}")
    total_b, total_a = sum(before.values()), sum(after.get(k, 0) for k in before)
    print(f"{'mean':<28}{total_b / len(before):>11.3f}s{total_a / len(before):>11.3f}s{total_a / total_b:>8.2f}")


if __name__ == "__main__":
    main()
