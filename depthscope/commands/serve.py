"""`depthscope serve`: browse a folder of runs in the dashboard."""
from __future__ import annotations

import argparse
import sys

from . import Command, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, metavar="DIR", help="folder of runs to browse")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not Path(args.runs).is_dir():
        raise UsageError(f"--runs {args.runs}: not a directory")
    from depthscope.causal_check import source_ablation
    from depthscope.dashboard import serve

    print(f"depthscope dashboard on http://{args.host}:{args.port}/ (runs: {Path(args.runs).resolve()})", file=sys.stderr)
    serve(args.runs, host=args.host, port=args.port, debug=args.debug, ablation=source_ablation)
    return 0


COMMAND = Command(
    name="serve",
    help="browse a folder of runs in the dashboard (a local web app)",
    add_arguments=add_arguments,
    run=run,
    description="Serve the depthscope dashboard over the runs in a folder: routing heatmaps, tokens, signal and "
                "gradients against a baseline, statistics, compare, evolution, and figure download.",
    epilog="example: depthscope serve --runs runs --port 8050, then open http://127.0.0.1:8050/",
)
