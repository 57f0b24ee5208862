"""Forward and training-step time of every mixer against the residual baseline, at equal shape, side by side.

    python bench/models.py                       # d=256, 16 blocks (32 sublayers), batch 8 x 256 tokens
    python bench/models.py --d-model 64 --layers 8 --repeats 3   # quick
    python bench/models.py --memory              # also peak resident memory of one training step per mixer

Repetitions are interleaved across mixers (round-robin) and the median is reported, so that a slow patch of a
shared machine hits every mixer alike. Targets (CPU): block_attnres forward <= 1.10x, step <= 1.15x; full <= 1.5x.
block_attnres is the default two-phase computation; block_attnres_plain the per-sublayer reference form.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from depthscope.models import DepthTransformer, ModelConfig

VARIANTS = {
    "residual": dict(mixer="residual"),
    "full_attnres": dict(mixer="full_attnres"),
    "block_attnres": dict(mixer="block_attnres"),  # two-phase, the default
    "block_attnres_plain": dict(mixer="block_attnres", two_phase=False),
    "denseformer": dict(mixer="denseformer"),
    "hyper": dict(mixer="hyper"),
    "mhc": dict(mixer="hyper", mhc=True),
}


def peak_step_memory_mb(cfg_kwargs: dict, batch: int, seq_len: int) -> float:
    """Peak resident memory of a fresh process that builds the model and runs one training step (MB)."""
    code = (
        "import json, sys, torch\n"
        "from depthscope.models import DepthTransformer, ModelConfig\n"
        "kw, batch, seq = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])\n"
        "model = DepthTransformer(ModelConfig(**kw))\n"
        "x = torch.randint(0, 256, (batch, seq + 1))\n"
        "logits = model(x[:, :-1])\n"
        "torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()\n"
        # VmHWM, not ru_maxrss: ru_maxrss carries the parent's peak across fork + exec
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cfg_kwargs), str(batch), str(seq_len)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=16, help="transformer blocks (2 sublayers each)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=8, help="Block AttnRes blocks N")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true",
                        help="also measure each mixer's peak memory for one training step, each in a fresh process")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    args = parser.parse_args()

    names = args.variants.split(",")
    if "residual" not in names:
        names.insert(0, "residual")
    models, optims, cfg_kwargs = {}, {}, {}
    for name in names:
        torch.manual_seed(0)
        cfg_kwargs[name] = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                                n_blocks=args.blocks, max_seq_len=args.seq_len, **VARIANTS[name])
        models[name] = DepthTransformer(ModelConfig(**cfg_kwargs[name]))
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
    if args.memory:
        peaks = {name: peak_step_memory_mb(cfg_kwargs[name], args.batch, args.seq_len) for name in names}
        print(f"\npeak resident memory of one training step, fresh process each (includes ~python+torch)")
        print(f"{'mixer':<26}{'peak MB':>10}{'x base':>8}")
        for name in names:
            print(f"{name:<26}{peaks[name]:>10.0f}{peaks[name] / peaks['residual']:>8.2f}")


if __name__ == "__main__":
    main()
