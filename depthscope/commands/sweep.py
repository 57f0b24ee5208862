"""`depthscope sweep`: a block-size sweep and a depth-versus-width sweep, trained and drawn."""
from __future__ import annotations

import argparse

from . import Command, UsageError

KINDS = ("block_size", "depth_width")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depthscope.models import ModelConfig
    from depthscope.models import TrainConfig
    from depthscope.options import add_options
    from depthscope.sweep import SweepConfig

    template = SweepConfig(out=None)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="which sweeps: block_size, depth_width or both (default: %(default)s)")
    add_options(parser, SweepConfig, ("out", "budget_tokens", "seeds", "corpus", "depths", "parameter_budget",
                                      "progress"))
    add_options(parser.add_argument_group("block-size sweep shape"), ModelConfig, ("n_layers", "d_model"),
                defaults=template.model)
    add_options(parser, TrainConfig, ("device",), defaults=template.train)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from depthscope.models import ModelConfig
    from depthscope.models import TrainConfig
    from depthscope.options import build
    from depthscope.sweep import SweepConfig, sweep

    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        raise UsageError("--kinds takes block_size, depth_width or both")
    template = SweepConfig(out=None)
    model = build(ModelConfig, args, base=template.model)
    train = build(TrainConfig, args, base=template.train)
    cfg = build(SweepConfig, args, base=template, out=Path(args.out), model=model, train=train)
    for path in sweep(cfg, kinds):
        print(path)
    return 0


COMMAND = Command(
    name="sweep",
    help="train a block-size sweep and a depth-versus-width sweep, and draw them",
    add_arguments=add_arguments,
    run=run,
    description="Block AttnRes at S = 1 (Full), 2, 4, ... L sublayers per block beside the residual baseline; "
                "and residual against Block AttnRes over several depths at a fixed parameter count. Loss with "
                "95 %% intervals over seeds, as CSV and SVG.",
    epilog="example: depthscope sweep --out sweeps --budget 300000 --seeds 0,1",
)
