"""`depthscope export`: the dashboard's figures of a run as SVG, PDF or PNG files with JSON manifests."""
from __future__ import annotations

import argparse
import sys

from . import Command, PARTIAL_HELP, exit_codes, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (e.g. runs/block8); its folder is the runs folder")
    parser.add_argument("--figures", default="routing,signal",
                        help="comma-separated figure names (default: %(default)s; see the list below)")
    parser.add_argument("--format", choices=("svg", "pdf", "png"), default="svg", help="file format (default: %(default)s)")
    parser.add_argument("--style", choices=("single", "double"), default="single",
                        help="paper column: single (3.5 in) or double (7 in) (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures and their JSON manifests")
    parser.add_argument("--baseline", metavar="RUN", help="baseline run directory (signal, gradients, compare)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a view parameter as in the app's URL (e.g. start=0, stop=5000, regex=[A-Z], k=2); repeatable")
    parser.add_argument("--allow-partial", action="store_true", help=PARTIAL_HELP + " (the figures that can be drawn)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    run = Path(args.run).resolve()
    if not run.is_dir():
        raise UsageError(f"{args.run}: not a run directory")
    from depthscope.causal_check import source_ablation
    from depthscope.dashboard import ExportError, export_files
    from depthscope.dashboard import Catalogue, NotFound
    from depthscope.dashboard import FIGURES
    from depthscope.probe import RunError

    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise UsageError(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    params = {"run": run.name}
    if args.baseline:
        base = Path(args.baseline).resolve()
        if base.parent != run.parent:
            raise UsageError("--baseline must sit in the same folder as RUN")
        params["baseline"] = base.name
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = value
    cat = Catalogue(run.parent, background=False, ablation=source_ablation)
    failed = 0
    for figure in figures:  # one at a time: with --allow-partial, a figure that cannot be drawn skips only itself
        try:
            written = export_files(cat, [figure], params, args.format, args.style, args.out)
        except (NotFound, RunError, ExportError, ValueError) as err:
            print(f"depthscope export: error: {figure}: {err}", file=sys.stderr)
            if not args.allow_partial:
                return 1
            failed += 1
            continue
        for path in written:
            print(path)
    if failed:
        print(f"depthscope export: {failed} of {len(figures)} figures not written (--allow-partial)", file=sys.stderr)
    return 0


COMMAND = Command(
    name="export",
    help="export the dashboard's figures of a run as SVG, PDF or PNG for papers",
    add_arguments=add_arguments,
    run=run,
    description="Draw figures of one run (the same builders as the dashboard) into files, each with a JSON "
                "manifest naming the run, statistic, parameters and code version. Heatmaps are true vector.",
    epilog="figures: routing, cell, tokens, token_heatmap, token_routing, token_norms, signal, gradients, "
           "grad_steps, jumps, long_range, sinks, ablation, compare, compare_run, compare_other, evolution, "
           "evolution_stat. example: depthscope export runs/block8 --baseline runs/residual "
           "--figures routing,signal --format pdf --style double --out figs/. "
           + exit_codes("the figures that can be drawn are written"),
)
