"""Export time per figure, this working tree beside a reference commit, measured in one run.

Each side runs in its own process over the demo bundle (assets/demo/runs) and draws every figure once (warm-up:
kaleido's Chromium starts, the runs' aggregates are computed). Then the two sides time
`depthscope.dashboard.export.render` of each figure in turn, before / after / before / ..., `--repeats` times,
so that a busy machine slows both alike; the ratio is the median of the paired ratios. The reference side imports
the package from `git archive REF` unpacked into a temporary folder (same layout as the installed namespace).

    python bench/figures.py                  # against the commit before issue 13's changes
    python bench/figures.py --ref HEAD~3 --repeats 5 --style double --format pdf
"""
from __future__ import annotations

import argparse
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


def serve(fmt: str, style: str) -> None:
    """Child: warm every case once, say "ready", then time case i for each line "i" read from stdin."""
    from depthscope.dashboard.export import render
    from depthscope.dashboard.runs import Catalogue

    cat = Catalogue(RUNS, background=False)
    for figure, params in CASES:
        render(cat, figure, params, fmt, style)  # warm: aggregates, kaleido, fonts
    print("ready", flush=True)
    for line in sys.stdin:
        figure, params = CASES[int(line)]
        t0 = time.perf_counter()
        render(cat, figure, params, fmt, style)
        print(time.perf_counter() - t0, flush=True)


def start(pythonpath: str | None, args) -> subprocess.Popen:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", "--format", args.format, "--style", args.style]
    child = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=tempfile.gettempdir())  # not the repository: its depthscope/ would shadow PYTHONPATH
    return child


def ask(child: subprocess.Popen, case: int) -> float:
    child.stdin.write(f"{case}\n")
    child.stdin.flush()
    return float(child.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default=DEFAULT_REF, help="commit to compare against (default: %(default)s)")
    parser.add_argument("--format", default="svg", choices=("svg", "pdf", "png"))
    parser.add_argument("--style", default="single", choices=("single", "double"))
    parser.add_argument("--repeats", type=int, default=5, help="timed draws per figure (median kept)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve(args.format, args.style)
        return
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        sides = [start(str(package_from(args.ref, Path(tmp))), args), start(None, args)]
        for child in sides:  # both warm before any timing
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("a side failed to start")
        before, after, ratios = {}, {}, {}
        for i, (figure, params) in enumerate(CASES):
            key = f"{figure} ({params['run']})"
            pairs = [(ask(sides[0], i), ask(sides[1], i)) for _ in range(args.repeats)]  # paired, interleaved
            before[key] = statistics.median(b for b, _ in pairs)
            after[key] = statistics.median(a for _, a in pairs)
            ratios[key] = statistics.median(a / b for b, a in pairs)
        for child in sides:
            child.stdin.close()
            child.wait()
    print(f"export time per figure, {args.format} {args.style} column; both sides warm, draws interleaved; "
          f"medians of {args.repeats} (ratio: median of the paired ratios)")
    print(f"{'figure':<28}{args.ref[:10]:>12}{'this tree':>12}{'ratio':>8}")
    for key in before:
        print(f"{key:<28}{before[key]:>11.3f}s{after[key]:>11.3f}s{ratios[key]:>8.2f}")
    n = len(before)
    print(f"{'mean':<28}{sum(before.values()) / n:>11.3f}s{sum(after.values()) / n:>11.3f}s"
          f"{statistics.median(ratios.values()):>8.2f} (median ratio)")


if __name__ == "__main__":
    main()
