"""`depthscope demo`: the dashboard on the bundled demo runs (assets/demo/runs)."""
from __future__ import annotations

import argparse
import sys

from . import Command, UsageError


def demo_runs():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "assets" / "demo" / "runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="folder of runs (default: the bundled demo, assets/demo/runs in a clone)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    runs = Path(args.runs) if args.runs else demo_runs()
    if not runs.is_dir():
        raise UsageError(f"no demo runs at {runs}: the bundle ships in the repository (assets/demo); from an "
                         "installed wheel, make one with `depthscope reproduce --out DIR` and serve DIR/runs")
    from depthscope.causal_check import source_ablation
    from depthscope.dashboard import serve

    print(f"depthscope demo on http://{args.host}:{args.port}/ (runs: {runs}); Ctrl-C stops it", file=sys.stderr)
    serve(str(runs), host=args.host, port=args.port, debug=False, ablation=source_ablation)
    return 0


COMMAND = Command(
    name="demo",
    help="open the dashboard on the bundled demo runs (trained and recorded here; nothing trains at start)",
    add_arguments=add_arguments,
    run=run,
    description="Serve the dashboard over assets/demo/runs: residual, Full and Block AttnRes, DenseFormer and "
                "mHC at one compute budget, checkpoints along one training, and a synthetic recall model.",
    epilog="example: depthscope demo --port 8050, then open http://127.0.0.1:8050/",
)
