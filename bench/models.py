"""Forward and training-step time of every mixer against the residual baseline, at equal shape, side by side.

    python bench/models.py                       # d=256, 16 blocks (32 sublayers), batch 8 x 256 tokens
    python bench/models.py --d-model 64 --layers 8 --repeats 3   # quick

Repetitions are interleaved across mixers (round-robin) and the median is reported, so that a slow patch of a
shared machine hits every mixer alike. Targets (CPU): block_attnres forward <= 1.10x, step <= 1.15x; full <= 1.5x.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from depthscope.models import DepthTransformer, ModelConfig

VARIANTS = {
    "residual": dict(mixer="residual"),
    "full_attnres": dict(mixer="full_attnres"),
    "block_attnres": dict(mixer="block_attnres"),
    "block_attnres_two_phase": dict(mixer="block_attnres", two_phase=True),
    "denseformer": dict(mixer="denseformer"),
    "hyper": dict(mixer="hyper"),
    "mhc": dict(mixer="hyper", mhc=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=16, help="transformer blocks (2 sublayers each)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=8, help="Block AttnRes blocks N")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    args = parser.parse_args()

    names = args.variants.split(",")
    if "residual" not in names:
        names.insert(0, "residual")
    models, optims = {}, {}
    for name in names:
        torch.manual_seed(0)
        cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, n_blocks=args.blocks,
                          max_seq_len=args.seq_len, **VARIANTS[name])
        models[name] = DepthTransformer(cfg)
        optims[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
    tokens = torch.randint(0, 256, (args.batch, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def forward(name: str) -> None:
        with torch.no_grad():
            models[name](inputs)

    def step(name: str) -> None:
        logits = models[name](inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optims[name].zero_grad(set_to_none=True)
        loss.backward()
        optims[name].step()

    times: dict[tuple[str, str], list[float]] = {(n, k): [] for n in names for k in ("forward", "step")}
    for name in names:  # warm-up
        forward(name)
        step(name)
    for _ in range(args.repeats):
        for kind, fn in (("forward", forward), ("step", step)):
            for name in names:
                start = time.perf_counter()
                fn(name)
                times[(name, kind)].append(time.perf_counter() - start)

    median = {key: statistics.median(vals) for key, vals in times.items()}
    print(f"shape: d={args.d_model}, {2 * args.layers} sublayers, batch {args.batch} x {args.seq_len} tokens, "
          f"N={args.blocks} blocks, {args.repeats} interleaved repeats, {torch.get_num_threads()} threads")
    print(f"{'mixer':<26}{'params':>10}{'forward s':>11}{'x base':>8}{'step s':>9}{'x base':>8}")
    for name in names:
        fwd, stp = median[(name, "forward")], median[(name, "step")]
        print(f"{name:<26}{models[name].num_parameters():>10,}{fwd:>11.3f}{fwd / median[('residual', 'forward')]:>8.2f}"
              f"{stp:>9.3f}{stp / median[('residual', 'step')]:>8.2f}")


if __name__ == "__main__":
    main()
