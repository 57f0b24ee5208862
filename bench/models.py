"""Forward and training-step time of every mixer against the residual baseline, at equal shape, side by side.

    python bench/models.py                       # d=256, 16 blocks (32 sublayers), batch 8 x 256 tokens
    python bench/models.py --d-model 64 --layers 8 --repeats 3   # quick
    python bench/models.py --memory              # also peak resident memory of one training step per mixer

Each mixer runs in a fresh process beside its own residual baseline. The two alternate within each round (which
goes first alternates too), and the ratio reported is the median of the per-round ratios, with its quartiles, so
that a slow patch of a shared machine hits both alike. Separate processes because, with all seven models timed
in one process, the training-step ratios depended on which other models were present (DenseFormer: 1.17x beside
the residual alone, 1.6-2.0x among all seven; memory allocation is shared).
Targets (CPU): block_attnres forward <= 1.10x, step <= 1.15x; full_attnres <= 1.5x.
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


def time_side_by_side(names: list[str], args: argparse.Namespace) -> dict:
    """Per-round forward and training-step times of the named mixers, interleaved in this process."""
    models, optims = {}, {}
    for name in names:
        torch.manual_seed(0)
        models[name] = DepthTransformer(ModelConfig(**config_kwargs(name, args)))
        optims[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
    tokens = torch.randint(0, 256, (args.batch, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def forward(name: str) -> None:
        with torch.no_grad():  # several in a row: one forward is short enough for the machine's jitter to show
            for _ in range(args.forwards):
                models[name](inputs)

    def step(name: str) -> None:
        logits = models[name](inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optims[name].zero_grad(set_to_none=True)
        loss.backward()
        optims[name].step()

    times: dict[str, dict[str, list[float]]] = {n: {"forward": [], "step": []} for n in names}
    for name in names:  # warm-up
        forward(name)
        step(name)
    for round_ in range(args.repeats):
        for kind, fn in (("forward", forward), ("step", step)):
            # alternate which model goes first, so that a drift within a round favours neither
            for name in names if round_ % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                fn(name)
                per_run = args.forwards if kind == "forward" else 1
                times[name][kind].append((time.perf_counter() - start) / per_run)
    return {name: {"params": models[name].num_parameters(), **times[name]} for name in names}


def paired_ratio(mixer: list[float], residual: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios mixer / residual: each round's two runs are back to back, so
    a slow patch of a shared machine that spans a round cancels out of its ratio."""
    ratios = [m / r for m, r in zip(mixer, residual)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return median, q1, q3


def config_kwargs(name: str, args: argparse.Namespace) -> dict:
    return dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, n_blocks=args.blocks,
                max_seq_len=args.seq_len, **VARIANTS[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=16, help="transformer blocks (2 sublayers each)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=8, help="Block AttnRes blocks N")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9, help="rounds (--forwards forwards and one step of each model)")
    parser.add_argument("--forwards", type=int, default=3, help="forward passes timed together in each round")
    parser.add_argument("--memory", action="store_true",
                        help="also measure each mixer's peak memory for one training step, each in a fresh process")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--pair", help=argparse.SUPPRESS)  # child: time residual and this mixer, print JSON
    args = parser.parse_args()
    shape_args = [f"--{k.replace('_', '-')}={getattr(args, k)}"
                  for k in ("d_model", "layers", "heads", "blocks", "seq_len", "batch", "repeats", "forwards")]
    if args.pair:
        print(json.dumps(time_side_by_side(["residual", args.pair], args)))
        return

    names = [n for n in args.variants.split(",") if n != "residual"]
    pairs = {}
    for name in names:  # each mixer in a fresh process beside its own residual baseline
        out = subprocess.run([sys.executable, __file__, "--pair", name, *shape_args], check=True,
                             capture_output=True, text=True)
        pairs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"shape: d={args.d_model}, {2 * args.layers} sublayers, batch {args.batch} x {args.seq_len} tokens, "
          f"N={args.blocks} blocks; each mixer in its own process, interleaved with a residual baseline there, "
          f"{args.repeats} rounds of {args.forwards} forwards + 1 training step, {torch.get_num_threads()} threads")
    print("times: medians; ratios: median of the per-round ratios to the residual [quartiles]")
    print(f"{'mixer':<22}{'params':>11}{'forward s':>11}{'x base':>20}{'step s':>9}{'x base':>20}")
    if pairs:
        base = {kind: statistics.median(t for p in pairs.values() for t in p["residual"][kind])
                for kind in ("forward", "step")}
        params = next(iter(pairs.values()))["residual"]["params"]
        print(f"{'residual (median)':<22}{params:>11,}{base['forward']:>11.3f}{'1.00':>20}"
              f"{base['step']:>9.3f}{'1.00':>20}")
    for name, pair in pairs.items():
        mixer, residual = pair[name], pair["residual"]
        row = f"{name:<22}{mixer['params']:>11,}"
        for kind, width in (("forward", 11), ("step", 9)):
            median, q1, q3 = paired_ratio(mixer[kind], residual[kind])
            row += f"{statistics.median(mixer[kind]):>{width}.3f}{f'{median:.2f} [{q1:.2f}-{q3:.2f}]':>20}"
        print(row)
    if args.memory:
        peaks = {name: peak_step_memory_mb(config_kwargs(name, args), args.batch, args.seq_len)
                 for name in ["residual", *names]}
        print("\npeak resident memory of one training step, fresh process each (includes ~python+torch)")
        print(f"{'mixer':<26}{'peak MB':>10}{'x base':>8}")
        for name, peak in peaks.items():
            print(f"{name:<26}{peak:>10.0f}{peak / peaks['residual']:>8.2f}")


if __name__ == "__main__":
    main()
