"""`depthscope train`: train one model of the family on a byte-level corpus and save a checkpoint."""
from __future__ import annotations

import argparse
import sys

from . import Command, UsageError

MODEL_OPTIONS = ("mixer", "n_layers", "d_model", "n_heads", "mlp_ratio", "n_blocks", "two_phase", "hyper_streams",
                 "mhc", "max_seq_len")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depthscope.models import ModelConfig
    from depthscope.models import CORPORA
    from depthscope.models import TrainConfig
    from depthscope.options import add_options

    # --two-phase defaults to None, "not given": it applies to block_attnres only
    add_options(parser.add_argument_group("model"), ModelConfig, MODEL_OPTIONS, defaults={"mixer": "block_attnres"},
                overrides={"two_phase": {"default": None},
                           "max_seq_len": {"default": None, "help": "longest sequence the model accepts "
                                                                    "(default: max(256, --seq-len))"}})

    data = parser.add_argument_group("data")
    data.add_argument("--corpus", default="pydoc", metavar="NAME|PATH",
                      help=f"one of {', '.join(CORPORA)}, or a UTF-8 text file (default: %(default)s)")
    data.add_argument("--data-seed", type=int, default=0,
                      help="seed of the train/held-out split and of the recall task; keep it fixed to compare "
                           "runs (default: %(default)s)")
    data.add_argument("--heldout-fraction", type=float, default=0.05,
                      help="share of the text held out, by whole documents (default: %(default)s)")

    add_options(parser.add_argument_group("optimisation"), TrainConfig,
                ("steps", "batch_size", "seq_len", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip",
                 "seed", "device", "num_threads"),
                overrides={"warmup_steps": {"default": None, "help": "linear warm-up steps before the cosine decay "
                                                                     "(default: 10% of --steps)"}})

    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR",
                     help="checkpoint directory (model.safetensors + checkpoint.json)")
    add_options(out, TrainConfig, ("save_every", "eval_every", "eval_batches"))
    out.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in DIR")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.models import META_FILE
    from depthscope.models import ModelConfig
    from depthscope.models import load_corpus
    from depthscope.models import TrainConfig, train, warmup_for
    from depthscope.options import build

    from depthscope.models import MIXER_KINDS, kind_named

    def takes(option: str) -> str:  # the mixers whose kind declares the option
        return ", ".join(name for name, kind in MIXER_KINDS.items() if option in kind.options)

    if args.mhc and "mhc" not in kind_named(args.mixer).options:
        raise UsageError(f"--mhc applies to --mixer {takes('mhc')} only")
    if args.two_phase is not None and "two_phase" not in kind_named(args.mixer).options:
        raise UsageError(f"--two-phase applies to --mixer {takes('two_phase')} only")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    if (out / META_FILE).exists() and not args.overwrite:
        raise UsageError(f"--out {out}: already holds a checkpoint; pass --overwrite to replace it")

    model_cfg = build(ModelConfig, args, vocab_size=256, max_seq_len=args.max_seq_len or max(256, args.seq_len),
                      two_phase=args.two_phase is not False)
    train_cfg = build(TrainConfig, args, warmup_steps=args.warmup_steps if args.warmup_steps is not None
                      else warmup_for(args.steps))
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


COMMAND = Command(
    name="train",
    help="train a small depth-routing transformer and save a checkpoint",
    add_arguments=add_arguments,
    run=run,
    description="Train one model of the family (the mixer decides how each sublayer's input is formed) on a "
                "byte-level corpus, report the held-out loss along the way, and save a checkpoint directory.",
    epilog="example: depthscope train --mixer block_attnres --blocks 8 --layers 8 --d-model 64 --corpus pydoc "
           "--steps 300 --out out/block8",
)
