"""`depthscope analyze`: every table of a run (optionally against a baseline) and summary.md."""
from __future__ import annotations

import argparse
import sys

from . import Command, PARTIAL_HELP, exit_codes, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory (from `depthscope record`)")
    parser.add_argument("--vs", metavar="BASELINE", help="baseline run directory to compare against")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the tables (Parquet and CSV) and summary.md")
    parser.add_argument("--k", type=float, default=None,
                        help="long-range window: sources more than k back count as long range / jumps "
                             "(default: 4 sublayers, 2 blocks for Block AttnRes)")
    parser.add_argument("--unit", choices=("auto", "documents", "blocks", "tokens"), default="auto",
                        help="bootstrap groups for confidence intervals (default: %(default)s = documents when a run "
                             "holds at least 20, else blocks of 256 tokens)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per CI (default: %(default)s)")
    parser.add_argument("--no-causal", action="store_true",
                        help="skip the source-ablation check (it reloads the run's checkpoint and runs the model)")
    parser.add_argument("--causal-tokens", type=int, default=1024,
                        help="held-out tokens for the source-ablation check (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: %(default)s; the statistics stream chunk by chunk)")
    parser.add_argument("--allow-partial", action="store_true",
                        help=PARTIAL_HELP + " (the sections that could be computed; summary.md says which were skipped)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    for path in [args.run] + ([args.vs] if args.vs else []):
        if not Path(path).is_dir():
            raise UsageError(f"{path}: not a run directory")
    if args.resamples < 1 or args.causal_tokens < 1:
        raise UsageError("--resamples and --causal-tokens must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from depthscope.analyses import analyze, write
    from depthscope.causal_check import causal_from_run

    analysis = analyze(args.run, baseline=args.vs, k=args.k, unit=args.unit,
                       causal=None if args.no_causal else causal_from_run,
                       causal_tokens=args.causal_tokens, n_resamples=args.resamples)
    written = write(analysis, args.out)
    print(f"{len(written) - 1} table files and summary.md in {args.out}")
    print(Path(args.out) / "summary.md")
    # a section that does not apply to the run's kind is a note; one lost to unreadable data is a failure
    failures = analysis.failures + (analysis.baseline.failures if analysis.baseline is not None else [])
    for failure in failures:
        print(f"depthscope analyze: error: {failure}", file=sys.stderr)
    if failures and not args.allow_partial:
        print(f"depthscope analyze: {len(failures)} section(s) could not be computed; the tables in {args.out} are "
              "incomplete (--allow-partial accepts that)", file=sys.stderr)
        return 1
    return 0


COMMAND = Command(
    name="analyze",
    help="compute routing, signal, gradient and mixing statistics of a run (optionally against a baseline)",
    add_arguments=add_arguments,
    run=run,
    description="Stream over a recorded run and write tidy tables (routing per sublayer and source, jumps, "
                "signal growth, gradient uniformity, effective mixing matrix, source ablation, estimates with "
                "bootstrap CIs, run-vs-run comparison) as Parquet and CSV, plus summary.md saying whether the "
                "Attention Residuals paper's findings hold at this scale.",
    epilog="example: depthscope analyze runs/block8 --vs runs/residual --out analysis/block8. A section that does "
           "not apply to the run's kind (e.g. the mixing matrix of a hyper run) is a note in summary.md, not a "
           "failure; one lost to a truncated or corrupt chunk is. " + exit_codes("the other sections are written"),
)
