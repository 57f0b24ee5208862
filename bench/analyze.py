"""Benchmark: the whole `depthscope analyze RUN --no-causal --out DIR` on a large synthetic run, end to end.

    python bench/analyze.py                       # the 1M-token run of bench/analyses.py (written there if missing)
    python bench/analyze.py --tokens 250000 --repeats 5

Each repeat is a fresh `depthscope analyze` process (imports, reading, every table, the bootstrap CIs and
writing Parquet/CSV/summary included); the figure is the median wall time over the repeats. The run is
bench/analyses.py's (1,000,000 tokens x 32 sublayers x 33 sources by default, float16 alpha, 489 documents),
reused from --dir when it is there. The machine's other load makes single timings noisy: read the median.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def ensure_run(path: Path, tokens: int) -> None:
    """bench/analyses.py's synthetic run at `path`, written when missing or incomplete."""
    from depthscope.probe import open_run

    try:
        ready = open_run(path).complete and open_run(path).n_tokens == tokens
    except Exception:
        ready = False
    if not ready:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from analyses import make_run  # bench/analyses.py

        started = time.perf_counter()
        make_run(path, tokens)
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s")


def time_analyze(run: Path, out: Path) -> float:
    """Wall seconds of one `depthscope analyze RUN --no-causal --out OUT` process."""
    exe = Path(sys.executable).with_name("depthscope")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "depthscope.cli"]
    started = time.perf_counter()
    subprocess.run(cmd + ["analyze", str(run), "--no-causal", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/depthscope-bench-analyses")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run = Path(args.dir) / f"run-{args.tokens}"
    ensure_run(run, args.tokens)
    times = []
    with tempfile.TemporaryDirectory(prefix="depthscope-analyze-") as out:
        for i in range(args.repeats):
            times.append(time_analyze(run, Path(out) / f"r{i}"))
            print(f"  repeat {i + 1}: {times[-1]:.2f} s", flush=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(f"depthscope analyze --no-causal on {args.tokens:,} tokens: median {statistics.median(times):.2f} s wall "
          f"over {len(times)} runs (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
