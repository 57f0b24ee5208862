"""`depthscope sweep`: a block-size sweep and a depth-versus-width sweep, trained here and drawn.

block size   one shape (n_layers transformer blocks, L = 2 n_layers sublayers); Block AttnRes with S = 1 (Full),
             2, 4, ... up to S = L (N = 1), and the residual baseline, all at the same token budget. The paper's
             16-block model stays near its best for S = 2..8 and drifts towards the baseline at S = 16 and 32.
depth-width  a fixed parameter budget P ~ 12 n_layers d^2 spread over several depths (d rounded to a multiple of
             2 * heads); residual against Block AttnRes at each shape. The paper finds AttnRes ahead at every
             shape, with its best shape deeper and narrower than the baseline's.

Output: OUT/block_size.csv, OUT/depth_width.csv (one row per trained model, seeds averaged with 95 % t-intervals)
and the two figures as SVG (OUT/block_size.svg, OUT/depth_width.svg).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from depthscope.models import ModelConfig, TrainConfig, option
from depthscope.options import token_count


def _model_template() -> ModelConfig:
    # ModelConfig's defaults: the block-size sweep's shape; n_blocks = 4 is the depth-width sweep's Block AttnRes
    # N (capped at 2 x depth); max_seq_len follows the training's seq_len
    return ModelConfig(n_blocks=4, max_seq_len=TrainConfig().seq_len)


def _train_template() -> TrainConfig:
    # TrainConfig's defaults; steps and warm-up from the budget; the held-out loss at the start and the end only
    return TrainConfig(eval_every=0)


@dataclass
class SweepConfig:
    out: Path | None = option(None, "folder for the tables and figures", metavar="DIR", required=True)
    model: ModelConfig = field(default_factory=_model_template)
    train: TrainConfig = field(default_factory=_train_template)
    budget_tokens: int = option(300_000, "training tokens per model", flag="--budget", parse=token_count)
    seeds: tuple[int, ...] = option((0, 1), "comma-separated seeds")
    corpus: str = option("pydoc", "training corpus")
    depths: tuple[int, ...] = option((2, 4, 8, 16), "depth-width sweep: transformer blocks")
    parameter_budget: int = option(400_000, "depth-width sweep: parameters in the transformer blocks",
                                   flag="--params", parse=token_count)
    progress: bool = option(True, "no progress bars", flag="--no-progress")


def _train_loss(cfg: SweepConfig, corpus, seed: int, **model) -> float:
    from depthscope.models import train

    model_cfg = replace(cfg.model, max_seq_len=cfg.train.seq_len, **model)
    train_cfg = cfg.train.with_budget(cfg.budget_tokens, seed=seed)
    return train(model_cfg, train_cfg, corpus, progress=cfg.progress).final_heldout_loss


def _summarise(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    from depthscope.analyses import seed_interval

    out = []
    for key, group in pd.DataFrame(rows).groupby(keys, sort=False):
        loss, low, high = seed_interval(group["loss"])
        out.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "seeds": len(group),
                    "loss": loss, "loss_low": low, "loss_high": high})
    return pd.DataFrame(out)


def block_sizes(n_sublayers: int) -> list[int]:
    """S = 1, 2, 4, ... up to L (each S gives N = ceil(L / S) blocks)."""
    sizes, size = [], 1
    while size < n_sublayers:
        sizes.append(size)
        size *= 2
    return sizes + [n_sublayers]


def block_size_sweep(cfg: SweepConfig, corpus) -> pd.DataFrame:
    L = cfg.model.n_sublayers
    rows = []
    for seed in cfg.seeds:
        rows.append(dict(series="residual", block_size=0, n_blocks=0, seed=seed,
                         loss=_train_loss(cfg, corpus, seed, mixer="residual")))
        for size in block_sizes(L):
            n_blocks = math.ceil(L / size)
            rows.append(dict(series="block_attnres", block_size=size, n_blocks=n_blocks, seed=seed,
                             loss=_train_loss(cfg, corpus, seed, mixer="block_attnres", n_blocks=n_blocks)))
    return _summarise(rows, ["series", "block_size", "n_blocks"])


def width_for(parameter_budget: int, n_layers: int, n_heads: int) -> int:
    """d with 12 n_layers d^2 closest to the budget, a multiple of 2 * n_heads (even rotary head size)."""
    unit = 2 * n_heads
    return max(unit, unit * round(math.sqrt(parameter_budget / (12 * n_layers)) / unit))


def depth_width_sweep(cfg: SweepConfig, corpus) -> pd.DataFrame:
    rows = []
    for seed in cfg.seeds:
        for depth in cfg.depths:
            d = width_for(cfg.parameter_budget, depth, cfg.model.n_heads)
            for mixer in ("residual", "block_attnres"):
                loss = _train_loss(cfg, corpus, seed, mixer=mixer, n_layers=depth, d_model=d,
                                   n_blocks=min(cfg.model.n_blocks, 2 * depth))
                rows.append(dict(series=mixer, n_layers=depth, d_model=d, params=12 * depth * d * d, seed=seed,
                                 loss=loss))
    return _summarise(rows, ["series", "n_layers", "d_model", "params"])


def sweep(cfg: SweepConfig, kinds: tuple[str, ...] = ("block_size", "depth_width")) -> list[Path]:
    from depthscope.dashboard import line_bytes, sweep_lines
    from depthscope.models import load_corpus

    cfg.out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(cfg.corpus, seed=0)
    written = []
    if "block_size" in kinds:
        table = block_size_sweep(cfg, corpus)
        table.to_csv(cfg.out / "block_size.csv", index=False)
        base = table[table.series == "residual"]["loss"]
        fig = sweep_lines(table[table.series != "residual"], "block_size", "sublayers per block S (1 = Full AttnRes)",
                          f"Block size sweep ({cfg.model.n_sublayers} sublayers, d={cfg.model.d_model}, "
                          f"{cfg.budget_tokens:,} tokens)", log_x=True,
                          baseline=float(base.iloc[0]) if len(base) else None)
        (cfg.out / "block_size.svg").write_bytes(line_bytes(fig, "svg", "single"))
        written += [cfg.out / "block_size.csv", cfg.out / "block_size.svg"]
    if "depth_width" in kinds:
        table = depth_width_sweep(cfg, corpus)
        table.to_csv(cfg.out / "depth_width.csv", index=False)
        fig = sweep_lines(table, "n_layers", "transformer blocks (width shrinks to keep parameters fixed)",
                          f"Depth against width at ~{cfg.parameter_budget:,} parameters", log_x=True)
        (cfg.out / "depth_width.svg").write_bytes(line_bytes(fig, "svg", "single"))
        written += [cfg.out / "depth_width.csv", cfg.out / "depth_width.svg"]
    return written
