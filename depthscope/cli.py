"""The `depthscope` command line.

Each subcommand is one `Command` in COMMANDS: a name, a one-line help, a function that adds its arguments to
its own subparser, and a function that runs it and returns an exit status. Adding a subcommand means writing
those two functions and appending one Command; no other subcommand changes.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from depthscope import figures_cmd


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # one line, shown in `depthscope --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""  # longer text for `depthscope NAME --help`
    epilog: str = ""


# Kept here, not imported, so that `depthscope --help` answers without importing torch; a test checks that these
# equal depthscope.models.MIXERS and depthscope.models.data.CORPORA.
MIXER_CHOICES = ("residual", "full_attnres", "block_attnres", "denseformer", "hyper")
CORPUS_NAMES = ("pydoc", "bible", "shakespeare", "recall")


EXIT_CODES = ("exit status: 0 done; 1 it could not do its job (a run, chunk or checkpoint that cannot be read, named "
              "on stderr){partial}; 2 bad arguments; 130 interrupted.")
PARTIAL_HELP = "write what can be done and exit 0 even when part of the run cannot be read (the errors still go to stderr)"


def _exit_codes(partial: str = "") -> str:
    return EXIT_CODES.format(partial=f"; with --allow-partial, {partial} and 0" if partial else "")


class UsageError(Exception):
    """Bad combination of arguments: printed as `depthscope NAME: error: ...`, exit status 2."""


# ---------------------------------------------------------------------------------------------------- train


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--mixer", choices=MIXER_CHOICES, default="block_attnres",
                       help="how each sublayer's input is formed (default: %(default)s)")
    model.add_argument("--layers", type=int, default=8,
                       help="transformer blocks; each has two sublayers, attention and MLP (default: %(default)s)")
    model.add_argument("--d-model", type=int, default=64, help="model width (default: %(default)s)")
    model.add_argument("--heads", type=int, default=4, help="attention heads (default: %(default)s)")
    model.add_argument("--mlp-ratio", type=int, default=4, help="MLP hidden width / d_model (default: %(default)s)")
    model.add_argument("--blocks", type=int, default=8,
                       help="N, number of Block AttnRes blocks (block_attnres only; N = 2 * layers is Full "
                            "AttnRes) (default: %(default)s)")
    model.add_argument("--two-phase", action=argparse.BooleanOptionalAction, default=None,
                       help="block_attnres: the exact two-phase computation (the default: each block's queries "
                            "read the completed blocks once); --no-two-phase computes each sublayer's softmax "
                            "over all its sources as written, the reference form")
    model.add_argument("--streams", type=int, default=4,
                       help="hyper: number of parallel residual streams (default: %(default)s)")
    model.add_argument("--mhc", action="store_true",
                       help="hyper: manifold-constrained HC (doubly stochastic stream mixing via Sinkhorn)")
    model.add_argument("--max-seq-len", type=int, default=None,
                       help="longest sequence the model accepts (default: max(256, --seq-len))")

    data = parser.add_argument_group("data")
    data.add_argument("--corpus", default="pydoc", metavar="NAME|PATH",
                      help=f"one of {', '.join(CORPUS_NAMES)}, or a UTF-8 text file (default: %(default)s)")
    data.add_argument("--data-seed", type=int, default=0,
                      help="seed of the train/held-out split and of the recall task; keep it fixed to compare "
                           "runs (default: %(default)s)")
    data.add_argument("--heldout-fraction", type=float, default=0.05,
                      help="share of the text held out, by whole documents (default: %(default)s)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=300, help="optimiser steps (default: %(default)s)")
    opt.add_argument("--batch-size", type=int, default=16, help="sequences per step (default: %(default)s)")
    opt.add_argument("--seq-len", type=int, default=128, help="tokens (bytes) per sequence (default: %(default)s)")
    opt.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default: %(default)s)")
    opt.add_argument("--weight-decay", type=float, default=0.1,
                     help="AdamW weight decay on weight matrices only (default: %(default)s)")
    opt.add_argument("--warmup-steps", type=int, default=None,
                     help="linear warm-up steps before the cosine decay (default: 10%% of --steps)")
    opt.add_argument("--min-lr-ratio", type=float, default=0.1,
                     help="final learning rate as a fraction of --lr (default: %(default)s)")
    opt.add_argument("--grad-clip", type=float, default=1.0,
                     help="max global gradient norm, 0 for none (default: %(default)s)")
    opt.add_argument("--seed", type=int, default=0,
                     help="seed of initialisation and batch sampling (default: %(default)s)")
    opt.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    opt.add_argument("--threads", type=int, default=None,
                     help="CPU threads (default: torch's choice); on a busy machine 1 can be several times "
                          "faster")

    run = parser.add_argument_group("output")
    run.add_argument("--out", required=True, metavar="DIR",
                     help="checkpoint directory (model.safetensors + checkpoint.json)")
    run.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also save DIR/step_XXXXXX/ at step 0 and every N steps (default: final only)")
    run.add_argument("--eval-every", type=int, default=50,
                     help="held-out loss every this many steps (default: %(default)s)")
    run.add_argument("--eval-batches", type=int, default=4,
                     help="held-out windows = this * --batch-size (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in DIR")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.models.checkpoint import META_FILE
    from depthscope.models.config import ModelConfig
    from depthscope.models.data import load_corpus
    from depthscope.models.train import TrainConfig, train

    if args.mhc and args.mixer != "hyper":
        raise UsageError("--mhc applies to --mixer hyper only")
    if args.two_phase is not None and args.mixer != "block_attnres":
        raise UsageError("--two-phase applies to --mixer block_attnres only")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if (out / META_FILE).exists() and not args.overwrite:
        raise UsageError(f"--out {out}: already holds a checkpoint; pass --overwrite to replace it")

    model_cfg = ModelConfig(
        vocab_size=256,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        mlp_ratio=args.mlp_ratio,
        max_seq_len=args.max_seq_len or max(256, args.seq_len),
        mixer=args.mixer,
        n_blocks=args.blocks,
        two_phase=args.two_phase is not False,
        hyper_streams=args.streams,
        mhc=args.mhc,
    )
    train_cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps if args.warmup_steps is not None else max(1, args.steps // 10),
        min_lr_ratio=args.min_lr_ratio,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        save_every=args.save_every,
        num_threads=args.threads,
    )
    corpus = load_corpus(args.corpus, seed=args.data_seed, heldout_fraction=args.heldout_fraction)
    print(corpus.describe(), file=sys.stderr)
    result = train(model_cfg, train_cfg, corpus, out_dir=out, progress=not args.no_progress)
    print(f"checkpoint: {result.checkpoint_dir}")
    if result.step_checkpoints:
        print(f"step checkpoints: {len(result.step_checkpoints)} in {out}/step_*")
    print(
        f"held-out loss: {result.first_heldout_loss:.4f} (step {result.eval_steps[0]}) -> "
        f"{result.final_heldout_loss:.4f} (step {result.eval_steps[-1]})"
    )
    print(
        f"train loss (last step): {result.final_train_loss:.4f}; {result.tokens_seen} tokens in "
        f"{result.train_time_s:.1f} s ({result.tokens_per_s:,.0f} tokens/s)"
    )
    return 0


# ---------------------------------------------------------------------------------------------------- serve


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, metavar="DIR", help="folder of runs to browse")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")


def _run_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not Path(args.runs).is_dir():
        raise UsageError(f"--runs {args.runs}: not a directory")
    from depthscope.dashboard.app import serve

    print(f"depthscope dashboard on http://{args.host}:{args.port}/ (runs: {Path(args.runs).resolve()})", file=sys.stderr)
    serve(args.runs, host=args.host, port=args.port, debug=args.debug)
    return 0


# ---------------------------------------------------------------------------------------------------- export


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
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


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    run = Path(args.run).resolve()
    if not run.is_dir():
        raise UsageError(f"{args.run}: not a run directory")
    from depthscope.dashboard.export import ExportError, export_files
    from depthscope.dashboard.runs import Catalogue, NotFound
    from depthscope.dashboard.views import FIGURES
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
    cat = Catalogue(run.parent, background=False)
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


# ---------------------------------------------------------------------------------------------------- analyze


def _add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
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


def _run_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    for path in [args.run] + ([args.vs] if args.vs else []):
        if not Path(path).is_dir():
            raise UsageError(f"{path}: not a run directory")
    if args.resamples < 1 or args.causal_tokens < 1:
        raise UsageError("--resamples and --causal-tokens must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from depthscope.analyses.analyze import analyze, write

    analysis = analyze(args.run, baseline=args.vs, k=args.k, unit=args.unit, causal=not args.no_causal,
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


# ---------------------------------------------------------------------------------------------------- record


def _add_record_arguments(parser: argparse.ArgumentParser) -> None:
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
                        help="pydoc, bible, shakespeare, recall, or a UTF-8 text file")
    parser.add_argument("--tokens", type=int, default=100_000,
                        help="tokens to record, in whole windows of --seq-len (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="runs/NAME", help="run directory to write")
    parser.add_argument("--grads", action="store_true",
                        help="backpropagate the LM loss of each batch (no optimiser step) to record dLoss/dh per "
                             "token and each sublayer's parameter-gradient norm")
    parser.add_argument("--summary", action="store_true",
                        help="keep running summaries (mean/variance of each weight, jump histograms, norm "
                             "statistics) instead of per-token arrays")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="tokens per window (default: the checkpoint's training --seq-len; for --hf and "
                             "--model min(256, the model's longest sequence))")
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout",
                        help="which side of the corpus split to read (default: %(default)s)")
    parser.add_argument("--chunk-tokens", type=int, default=8192,
                        help="tokens per on-disk chunk (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--allow-partial", action="store_true",
                        help=PARTIAL_HELP + " (a run shorter than --tokens when the split runs out)")


def _run_record(args: argparse.Namespace) -> int:
    from depthscope.probe.recording import record_run

    if args.tokens < 1 or args.batch_size < 1 or args.chunk_tokens < 1 or (args.seq_len is not None and args.seq_len < 1):
        raise UsageError("--tokens, --batch-size, --seq-len and --chunk-tokens must be at least 1")
    if args.tokenizer is not None and not args.model:
        raise UsageError("--tokenizer applies to --model only")
    if args.hf or args.model:
        from depthscope.record_foreign import run_record_command

        return run_record_command(args)
    result = record_run(args.checkpoint, args.corpus, args.out, tokens=args.tokens, grads=args.grads,
                        summary=args.summary, batch_size=args.batch_size, seq_len=args.seq_len, split=args.split,
                        chunk_tokens=args.chunk_tokens, overwrite=args.overwrite, device=args.device,
                        progress=not args.no_progress)
    print(f"run: {result.path} ({result.tokens} tokens in {result.batches} batches, {result.seconds:.1f} s)")
    if result.exhausted:
        print(f"depthscope record: {'warning' if args.allow_partial else 'error'}: the {args.split} split ran out "
              f"after {result.tokens} of {args.tokens} tokens; the run in {result.path} is complete but shorter"
              + ("" if args.allow_partial else " (--allow-partial accepts that)"), file=sys.stderr)
        return 0 if args.allow_partial else 1
    return 0


# ---------------------------------------------------------------------------------------------------- demo


def _demo_runs():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "assets" / "demo" / "runs"


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="folder of runs (default: the bundled demo, assets/demo/runs in a clone)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default: %(default)s)")


def _run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    runs = Path(args.runs) if args.runs else _demo_runs()
    if not runs.is_dir():
        raise UsageError(f"no demo runs at {runs}: the bundle ships in the repository (assets/demo); from an "
                         "installed wheel, make one with `depthscope reproduce --out DIR` and serve DIR/runs")
    from depthscope.dashboard.app import serve

    print(f"depthscope demo on http://{args.host}:{args.port}/ (runs: {runs}); Ctrl-C stops it", file=sys.stderr)
    serve(str(runs), host=args.host, port=args.port, debug=False)
    return 0


# ---------------------------------------------------------------------------------------------------- reproduce


def _add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    from depthscope.reproduce import MIXER_VARIANTS, ReproduceConfig

    d = ReproduceConfig(out=None)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for checkpoints, runs, figures, report.md")
    parser.add_argument("--device", default="cpu", help="torch device, cpu or cuda (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=d.budget_tokens,
                        help="training tokens per model, the same for every mixer (default: %(default).0f)")
    parser.add_argument("--seeds", default=None,
                        help=f"comma-separated training seeds; the first is recorded (default: "
                             f"{','.join(map(str, d.seeds))}; with --ladder every seed is recorded, default 0,1)")
    parser.add_argument("--corpus", default=d.corpus, help="training corpus (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=d.n_layers, help="transformer blocks (default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=d.d_model, help="width (default: %(default)s)")
    parser.add_argument("--heads", type=int, default=d.n_heads, help="attention heads (default: %(default)s)")
    parser.add_argument("--blocks", type=int, default=d.n_blocks, help="Block AttnRes blocks N (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--record-tokens", type=int, default=d.record_tokens,
                        help="held-out tokens recorded per model (default: %(default)s)")
    parser.add_argument("--recall-budget", type=float, default=d.recall_budget_tokens,
                        help="training tokens of the synthetic recall model (default: %(default).0f)")
    parser.add_argument("--mixers", default=",".join(d.mixers),
                        help=f"comma-separated subset of {', '.join(MIXER_VARIANTS)}; residual is the baseline "
                             "and must be among them (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from depthscope.ladder import add_ladder_arguments

    add_ladder_arguments(parser)


def _run_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.reproduce import MIXER_VARIANTS, ReproduceConfig, reproduce

    if args.ladder:
        from depthscope.ladder import run_ladder_command

        return run_ladder_command(args)
    args.seeds = args.seeds or ",".join(map(str, ReproduceConfig(out=None).seeds))
    mixers = tuple(m for m in args.mixers.split(",") if m)
    unknown = [m for m in mixers if m not in MIXER_VARIANTS]
    if unknown or "residual" not in mixers:
        raise UsageError(f"--mixers must name the residual baseline and only {', '.join(MIXER_VARIANTS)}")
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    if not seeds:
        raise UsageError("--seeds needs at least one seed")
    cfg = ReproduceConfig(out=Path(args.out), device=args.device, budget_tokens=int(args.budget), seeds=seeds,
                          corpus=args.corpus, n_layers=args.layers, d_model=args.d_model, n_heads=args.heads,
                          n_blocks=args.blocks, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
                          record_tokens=args.record_tokens, recall_budget_tokens=int(args.recall_budget),
                          mixers=mixers, progress=not args.no_progress)
    report = reproduce(cfg)
    print(f"report: {report}\nserve it: depthscope serve --runs {cfg.out / 'runs'}")
    return 0


# ---------------------------------------------------------------------------------------------------- sweep


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the tables and figures")
    parser.add_argument("--kinds", default="block_size,depth_width",
                        help="which sweeps: block_size, depth_width or both (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=300_000, help="training tokens per model (default: %(default).0f)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--corpus", default="pydoc", help="training corpus (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=8, help="block-size sweep: transformer blocks (default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=64, help="block-size sweep: width (default: %(default)s)")
    parser.add_argument("--depths", default="2,4,8,16", help="depth-width sweep: transformer blocks (default: %(default)s)")
    parser.add_argument("--params", type=float, default=400_000,
                        help="depth-width sweep: parameters in the transformer blocks (default: %(default).0f)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.sweep import SweepConfig, sweep

    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - {"block_size", "depth_width"}:
        raise UsageError("--kinds takes block_size, depth_width or both")
    cfg = SweepConfig(out=Path(args.out), budget_tokens=int(args.budget),
                      seeds=tuple(int(s) for s in args.seeds.split(",") if s), corpus=args.corpus,
                      n_layers=args.layers, d_model=args.d_model,
                      depths=tuple(int(d) for d in args.depths.split(",") if d), parameter_budget=int(args.params),
                      device=args.device, progress=not args.no_progress)
    for path in sweep(cfg, kinds):
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------------- registry

COMMANDS: list[Command] = [
    Command(
        name="train",
        help="train a small depth-routing transformer and save a checkpoint",
        add_arguments=_add_train_arguments,
        run=_run_train,
        description="Train one model of the family (the mixer decides how each sublayer's input is formed) on a "
                    "byte-level corpus, report the held-out loss along the way, and save a checkpoint directory.",
        epilog="example: depthscope train --mixer block_attnres --blocks 8 --layers 8 --d-model 64 --corpus pydoc "
               "--steps 300 --out out/block8",
    ),
    Command(
        name="record",
        help="record depth attention, hidden-state norms and gradients of a checkpoint over a corpus",
        add_arguments=_add_record_arguments,
        run=_run_record,
        description="Run a checkpoint (or a local Hugging Face model folder with --hf, or any model a Python "
                    "function builds with --model) over consecutive windows of a corpus with the probe attached and write a run "
                    "directory: per token, the depth-attention weights of every sublayer, the RMS of each "
                    "sublayer's input and output, document, position and loss (with --grads also dLoss/dh and "
                    "per-sublayer gradient norms), or only running summaries (--summary). Format: probe/SCHEMA.md.",
        epilog="examples: depthscope record --checkpoint out/block8 --corpus pydoc --tokens 100000 --out runs/block8; "
               "depthscope record --hf models/tiny-llama --corpus notes.txt --tokens 20000 --grads --out runs/llama. "
               + _exit_codes("a run shorter than --tokens when the split runs out"),
    ),
    Command(
        name="serve",
        help="browse a folder of runs in the dashboard (a local web app)",
        add_arguments=_add_serve_arguments,
        run=_run_serve,
        description="Serve the depthscope dashboard over the runs in a folder: routing heatmaps, tokens, signal and "
                    "gradients against a baseline, statistics, compare, evolution, and figure download.",
        epilog="example: depthscope serve --runs runs --port 8050, then open http://127.0.0.1:8050/",
    ),
    Command(
        name="export",
        help="export the dashboard's figures of a run as SVG, PDF or PNG for papers",
        add_arguments=_add_export_arguments,
        run=_run_export,
        description="Draw figures of one run (the same builders as the dashboard) into files, each with a JSON "
                    "manifest naming the run, statistic, parameters and code version. Heatmaps are true vector.",
        epilog="figures: routing, cell, tokens, token_heatmap, token_routing, token_norms, signal, gradients, "
               "grad_steps, jumps, long_range, sinks, ablation, compare, compare_run, compare_other, evolution, "
               "evolution_stat. example: depthscope export runs/block8 --baseline runs/residual "
               "--figures routing,signal --format pdf --style double --out figs/. "
               + _exit_codes("the figures that can be drawn are written"),
    ),
    Command(
        name="figures",
        help="the paper's figure set of a run against a baseline (Figs. 5b/c, 8, 9, jumps, sinks) and a contact sheet",
        add_arguments=figures_cmd.add_arguments,
        run=figures_cmd.run,
        description=figures_cmd.DESCRIPTION,
        epilog=figures_cmd.EPILOG,
    ),
    Command(
        name="analyze",
        help="compute routing, signal, gradient and mixing statistics of a run (optionally against a baseline)",
        add_arguments=_add_analyze_arguments,
        run=_run_analyze,
        description="Stream over a recorded run and write tidy tables (routing per sublayer and source, jumps, "
                    "signal growth, gradient uniformity, effective mixing matrix, source ablation, estimates with "
                    "bootstrap CIs, run-vs-run comparison) as Parquet and CSV, plus summary.md saying whether the "
                    "Attention Residuals paper's findings hold at this scale.",
        epilog="example: depthscope analyze runs/block8 --vs runs/residual --out analysis/block8. A section that does "
               "not apply to the run's kind (e.g. the mixing matrix of a hyper run) is a note in summary.md, not a "
               "failure; one lost to a truncated or corrupt chunk is. " + _exit_codes("the other sections are written"),
    ),
    Command(
        name="demo",
        help="open the dashboard on the bundled demo runs (trained and recorded here; nothing trains at start)",
        add_arguments=_add_demo_arguments,
        run=_run_demo,
        description="Serve the dashboard over assets/demo/runs: residual, Full and Block AttnRes, DenseFormer and "
                    "mHC at one compute budget, checkpoints along one training, and a synthetic recall model.",
        epilog="example: depthscope demo --port 8050, then open http://127.0.0.1:8050/",
    ),
    Command(
        name="reproduce",
        help="train every mixer at one budget, record, analyse, and write a report against the paper",
        add_arguments=_add_reproduce_arguments,
        run=_run_reproduce,
        description="Regenerate the demo bundle and report.md: held-out loss per mixer at equal compute with "
                    "confidence intervals over seeds, signal and gradient growth against the residual baseline, "
                    "routing heatmaps, and every mixer's effective mixing matrix. Resumes where it stopped.",
        epilog="example: depthscope reproduce --out assets/demo (about 30 minutes on 2 CPU cores at the default budget)",
    ),
    Command(
        name="sweep",
        help="train a block-size sweep and a depth-versus-width sweep, and draw them",
        add_arguments=_add_sweep_arguments,
        run=_run_sweep,
        description="Block AttnRes at S = 1 (Full), 2, 4, ... L sublayers per block beside the residual baseline; "
                    "and residual against Block AttnRes over several depths at a fixed parameter count. Loss with "
                    "95 %% intervals over seeds, as CSV and SVG.",
        epilog="example: depthscope sweep --out sweeps --budget 300000 --seeds 0,1",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    from depthscope import __version__

    parser = argparse.ArgumentParser(
        prog="depthscope",
        description="See, measure and compare depth routing (Attention Residuals and peers) in transformers.",
    )
    parser.add_argument("--version", action="version", version=f"depthscope {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            epilog=command.epilog or None,
        )
        command.add_arguments(sub)
        sub.set_defaults(_command=command, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        parser.print_help()
        return 2
    try:
        return int(command.run(args) or 0)
    except UsageError as err:
        args._parser.error(str(err))  # exits with status 2
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        # The library's errors (CorpusError, CheckpointError, config checks) say what is wrong and where.
        print(f"depthscope {command.name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"depthscope {command.name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
