"""`depthscope reproduce` (and `reproduce --ladder`): train every mixer at one budget, record, analyse, report."""
from __future__ import annotations

import argparse

from . import Command, UsageError

MODEL_OPTIONS = ("n_layers", "d_model", "n_heads", "n_blocks")
TRAIN_OPTIONS = ("seq_len", "batch_size", "lr", "device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depthscope.models import ModelConfig
    from depthscope.models import TrainConfig
    from depthscope.options import add_options
    from depthscope.reproduce import ReproduceConfig

    template = ReproduceConfig(out=None)
    ladder = _ladder_defaults()
    add_options(parser, ReproduceConfig, ("out", "budget_tokens", "seeds", "corpus", "record_tokens",
                                          "recall_budget_tokens", "mixers", "progress"),
                overrides={"seeds": {"default": None, "help": (
                    f"comma-separated training seeds; the first is recorded (default: "
                    f"{','.join(map(str, template.seeds))}; with --ladder every seed is recorded, default "
                    f"{','.join(map(str, ladder.seeds))})")}})
    add_options(parser.add_argument_group("model (every mixer)"), ModelConfig, MODEL_OPTIONS, defaults=template.model,
                overrides={"n_blocks": {"help": "Block AttnRes blocks N"}})
    add_options(parser.add_argument_group("training (every mixer)"), TrainConfig, TRAIN_OPTIONS,
                defaults=template.train)
    add_ladder_arguments(parser, ladder)


def _ladder_defaults():
    from depthscope.ladder import LadderConfig

    return LadderConfig(out=None)


def add_ladder_arguments(parser: argparse.ArgumentParser, defaults) -> None:
    """`reproduce --ladder`'s own options (the recipe options of `reproduce` apply at every rung)."""
    group = parser.add_argument_group(
        "scale ladder (--ladder)", "residual against Block AttnRes at growing scale; --rungs and --corpora replace "
        "--layers, --d-model, --budget and --corpus; --blocks, --mixers and --recall-budget do not apply")
    group.add_argument("--ladder", action="store_true", help="run the scale ladder instead of the single-scale report")
    group.add_argument("--rungs", default=",".join(r.spec() for r in defaults.rungs),
                       help="comma-separated BLOCKSxWIDTH:TOKENS (k/M allowed) (default: %(default)s)")
    group.add_argument("--corpora", default=",".join(name + (":" + "+".join(map(str, chosen)) if chosen else "")
                                                     for name, chosen in defaults.corpora.items()),
                       help="comma-separated corpora, each on every rung or on NAME:RUNG+RUNG only "
                            "(default: %(default)s)")
    group.add_argument("--no-figures", action="store_true",
                       help="tables and report.md only, no SVG figures (a machine without Chromium)")
    group.add_argument("--block-size", type=int, default=defaults.block_size,
                       help="Block AttnRes sublayers per block S, the same at every rung (default: %(default)s)")


def _config(args: argparse.Namespace, **changes):
    """The ReproduceConfig the options give (model and training recipe over the command's template)."""
    from depthscope.models import ModelConfig
    from depthscope.models import TrainConfig
    from depthscope.options import build
    from depthscope.reproduce import ReproduceConfig

    template = ReproduceConfig(out=None)
    return build(ReproduceConfig, args, base=template, model=build(ModelConfig, args, base=template.model),
                 train=build(TrainConfig, args, base=template.train), **changes)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.reproduce import MIXER_VARIANTS, reproduce

    if args.ladder:
        return run_ladder(args)
    unknown = [m for m in args.mixers if m not in MIXER_VARIANTS]
    if unknown or "residual" not in args.mixers:
        raise UsageError(f"--mixers must name the residual baseline and only {', '.join(MIXER_VARIANTS)}")
    if args.seeds is not None and not args.seeds:
        raise UsageError("--seeds needs at least one seed")
    cfg = _config(args, out=Path(args.out))
    report = reproduce(cfg)
    print(f"report: {report}\nserve it: depthscope serve --runs {cfg.out / 'runs'}")
    return 0


def run_ladder(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.ladder import LadderConfig, ladder, parse_corpora, parse_rungs

    try:
        rungs = parse_rungs(args.rungs)
        corpora = parse_corpora(args.corpora)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.block_size < 1:
        raise UsageError("--block-size must be at least 1")
    # the recipe: reproduce's options; each rung sets its own shape, tokens, corpus, seeds and mixers
    recipe = _config(args, out=None)
    try:
        cfg = LadderConfig(out=Path(args.out), rungs=rungs, corpora=corpora,
                           seeds=args.seeds if args.seeds is not None else LadderConfig(out=None).seeds,
                           block_size=args.block_size, recipe=recipe, progress=args.progress,
                           figures=not args.no_figures)
    except ValueError as err:
        raise UsageError(str(err)) from None
    report = ladder(cfg)
    print(f"report: {report}")
    return 0


COMMAND = Command(
    name="reproduce",
    help="train every mixer at one budget, record, analyse, and write a report against the paper",
    add_arguments=add_arguments,
    run=run,
    description="Regenerate the demo bundle and report.md: held-out loss per mixer at equal compute with "
                "confidence intervals over seeds, signal and gradient growth against the residual baseline, "
                "routing heatmaps, and every mixer's effective mixing matrix. Resumes where it stopped.",
    epilog="example: depthscope reproduce --out assets/demo (about 30 minutes on 2 CPU cores at the default budget)",
)
