"""`depthscope figures RUN --vs BASE --out DIR`: the paper's figure set in one command (dashboard.figure_set)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import Command, UsageError

DESCRIPTION = (
    "Draw the paper's figure set of RUN against the baseline BASE with the dashboard's own figure builders: output "
    "and input magnitude against depth (Fig. 5b), parameter and activation gradient magnitude (Fig. 5c), routing "
    "heatmaps pre-attention / pre-MLP (Fig. 8), the effective mixing matrices of several runs side by side "
    "(Fig. 9), jump distances and depth sinks; each with a JSON manifest and a caption, and index.html, a contact "
    "sheet showing them all. Print style: single (3.4 in) or double (7 in) column, fonts 7-9 pt, PDF fonts as "
    "TrueType, vector heatmaps.")
EPILOG = ("example: depthscope figures assets/demo/runs/block_attnres --vs assets/demo/runs/residual "
          "--others full_attnres --mixing residual full_attnres block_attnres denseformer mhc --out figs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (e.g. runs/block8); its folder is the runs folder")
    parser.add_argument("--vs", required=True, metavar="BASE", help="baseline run (a directory, or a name in RUN's folder)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures, manifests, captions and index.html")
    parser.add_argument("--others", nargs="*", default=[], metavar="RUN",
                        help="more runs drawn as lines in the magnitude plots (names or directories in RUN's folder)")
    parser.add_argument("--routing", nargs="*", default=[], metavar="RUN",
                        help="more runs with a routing heatmap (Fig. 8) beside RUN's")
    parser.add_argument("--mixing", nargs="*", default=[], metavar="RUN",
                        help="runs whose effective mixing matrices are set side by side (Fig. 9; default: RUN and "
                             "BASE). Hyper-Connection (mHC) runs do not record stream mixing: theirs comes from the "
                             "checkpoint they were recorded from")
    parser.add_argument("--checkpoints", metavar="DIR",
                        help="folder of checkpoints named like the runs, for Hyper-Connection runs whose recorded "
                             "checkpoint path does not resolve")
    parser.add_argument("--format", choices=("svg", "pdf", "png"), default="svg", help="file format (default: %(default)s)")
    parser.add_argument("--style", choices=("single", "double"), default="double",
                        help="paper column: single (3.4 in) or double (7 in) (default: %(default)s)")
    parser.add_argument("--scale", choices=("power", "log", "row", "linear"), default=None,
                        help="heatmap colour scale (default: power, so that weights beside the embedding's show)")
    parser.add_argument("--no-captions", action="store_true", help="do not write NAME.FORMAT.txt caption files")


def _name(value: str, root: Path, what: str) -> str:
    """A run given as a directory or as a name in the runs folder -> its name (it must live in that folder)."""
    path = Path(value)
    if path.is_dir() and path.resolve().parent == root:
        return path.resolve().name
    if Path(value).name == value and (root / value).is_dir():
        return value
    raise UsageError(f"{what} {value!r}: not a run in {root} (all runs of one figure set share one folder)")


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run).resolve()
    if not run_dir.is_dir():
        raise UsageError(f"{args.run}: not a run directory")
    root = run_dir.parent
    from depthscope.dashboard import ExportError
    from depthscope.dashboard import FigureSet, write_figure_set
    from depthscope.dashboard import NotFound
    from depthscope.probe import RunError

    spec = FigureSet(
        run=run_dir.name, baseline=_name(args.vs, root, "--vs"),
        others=[_name(r, root, "--others") for r in args.others],
        routing=[_name(r, root, "--routing") for r in args.routing],
        mixing=[_name(r, root, "--mixing") for r in args.mixing],
        checkpoints=Path(args.checkpoints) if args.checkpoints else None,
        fmt=args.format, style=args.style, scale=args.scale, captions=not args.no_captions)

    def progress(i: int, n: int, what: str) -> None:
        print(f"\r[{'#' * (20 * i // n):<20}] {i}/{n} {what:<40}", end="" if i < n else "\n", file=sys.stderr,
              flush=True)

    try:
        written = write_figure_set(root, spec, args.out, progress=progress)
    except (NotFound, RunError, ExportError, FileNotFoundError) as err:
        print(f"\ndepthscope figures: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    print(Path(args.out) / "index.html")
    return 0


COMMAND = Command(
    name="figures",
    help="the paper's figure set of a run against a baseline (Figs. 5b/c, 8, 9, jumps, sinks) and a contact sheet",
    add_arguments=add_arguments,
    run=run,
    description=DESCRIPTION,
    epilog=EPILOG,
)
