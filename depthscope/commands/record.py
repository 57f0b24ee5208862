"""`depthscope record`: record a checkpoint (or a Hugging Face folder, or a model a function builds) over a corpus."""
from __future__ import annotations

import argparse
import sys

from . import PARTIAL_HELP, Command, UsageError, exit_codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depthscope.models import CORPORA
    from depthscope.options import add_options
    from depthscope.record import RecordOptions

    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (from `depthscope train`)")
    what.add_argument("--hf", metavar="DIR", help="a local Hugging Face causal-LM folder (config.json, "
                                                 "*.safetensors and its tokenizer files), loaded offline")
    what.add_argument("--model", metavar="MODULE:FUNCTION",
                      help="an importable function returning an nn.Module (or a (module, tokenizer) pair)")
    parser.add_argument("--tokenizer", metavar="DIR|FILE|bytes", default=None,
                        help="with --model: a Hugging Face tokenizer folder, a tokenizer.json, or 'bytes' "
                             "(default: the factory's tokenizer, else bytes)")
    parser.add_argument("--corpus", required=True, metavar="NAME|FILE",
                        help=f"{', '.join(CORPORA)}, or a UTF-8 text file")
    parser.add_argument("--out", required=True, metavar="runs/NAME", help="run directory to write")
    add_options(parser, RecordOptions)
    parser.add_argument("--allow-partial", action="store_true",
                        help=PARTIAL_HELP + " (a run shorter than --tokens when the split runs out)")


def run(args: argparse.Namespace) -> int:
    from depthscope.options import build
    from depthscope.record import RecordOptions, record_run

    try:
        options = build(RecordOptions, args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.tokenizer is not None and not args.model:
        raise UsageError("--tokenizer applies to --model only")
    if args.hf or args.model:
        return _record_foreign(args, options)
    result = record_run(args.checkpoint, args.corpus, args.out, options)
    print(f"run: {result.path} ({result.tokens} tokens in {result.batches} batches, {result.seconds:.1f} s)")
    if result.exhausted:
        print(f"depthscope record: {'warning' if args.allow_partial else 'error'}: the {args.split} split ran out "
              f"after {result.tokens} of {args.tokens} tokens; the run in {result.path} is complete but shorter"
              + ("" if args.allow_partial else " (--allow-partial accepts that)"), file=sys.stderr)
        return 0 if args.allow_partial else 1
    return 0


def _record_foreign(args: argparse.Namespace, options) -> int:
    """`--hf DIR | --model MODULE:FUNCTION`: a model depthscope did not build (depthscope.record_foreign)."""
    from depthscope.probe import ProbeError
    from depthscope.record_foreign import ForeignModelError, describe, load_factory, load_hf_folder, record_foreign

    if args.hf:
        foreign = load_hf_folder(args.hf, device=options.device)
    else:
        foreign = load_factory(args.model, tokenizer=args.tokenizer, device=options.device)
    print(describe(foreign), file=sys.stderr)
    try:
        result = record_foreign(foreign, args.corpus, args.out, options)
    except ProbeError as err:  # the probe cannot read this model: say which model, keep the probe's words
        raise ForeignModelError(f"{args.hf or args.model}: {err}") from None
    if result.exhausted:
        print(f"the {options.split} split ran out after {result.tokens} tokens", file=sys.stderr)
    print(f"run: {result.path} ({result.tokens} tokens in {result.batches} batches, {result.seconds:.1f} s)")
    return 0


COMMAND = Command(
    name="record",
    help="record depth attention, hidden-state norms and gradients of a checkpoint over a corpus",
    add_arguments=add_arguments,
    run=run,
    description="Run a checkpoint (or a local Hugging Face model folder with --hf, or any model a Python "
                "function builds with --model) over consecutive windows of a corpus with the probe attached and write a run "
                "directory: per token, the depth-attention weights of every sublayer, the RMS of each "
                "sublayer's input and output, document, position and loss (with --grads also dLoss/dh and "
                "per-sublayer gradient norms), or only running summaries (--summary). Format: probe/SCHEMA.md.",
    epilog="examples: depthscope record --checkpoint out/block8 --corpus pydoc --tokens 100000 --out runs/block8; "
           "depthscope record --hf models/tiny-llama --corpus notes.txt --tokens 20000 --grads --out runs/llama. "
           + exit_codes("a run shorter than --tokens when the split runs out"),
)
