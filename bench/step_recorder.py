"""Cost of recording routing over training: a training loop with a StepRecorder beside the same loop without.

    python bench/step_recorder.py            # 16 sublayers, d=128, batch 4 x 128, 20 steps, every 10th recorded
    python bench/step_recorder.py --full     # 32 sublayers, d=256, batch 8 x 256

Models: depthscope's Block AttnRes (its own taps) and attn-res's AttnResTransformer in Block mode (through the
built-in adapter), 8 blocks each. Each round trains a fresh copy `--steps` steps (forward, backward, AdamW) once
plainly and once with StepRecorder(every=...) writing each recorded step into its own run (per-token arrays,
summaries, gradients). Printed per model (process CPU time, medians over rounds): a plain step; a recorded step
(probe attached, run written and completed: a fixed cost per recorded step, mostly creating and closing the
run's files); the measured ratio of the two loops; and the ratio a loop recording every 100th step would have,
1 + (recorded - plain) / plain / 100, from the same step times (steady on a busy machine, unlike whole loops).
"""
from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from depthscope.models import DepthTransformer, ModelConfig
from depthscope.probe.training import StepRecorder

CLOCK = time.process_time
VOCAB = 256


def depthscope_block(sublayers: int, d: int, seq: int):
    torch.manual_seed(0)
    return DepthTransformer(ModelConfig(mixer="block_attnres", n_layers=sublayers // 2, d_model=d,
                                        n_heads=max(1, d // 64), max_seq_len=seq, n_blocks=8))


def attnres_block(sublayers: int, d: int, seq: int):
    from attn_res import AttnResMode, AttnResTransformer, TransformerConfig

    torch.manual_seed(0)
    heads = max(2, d // 64)
    return AttnResTransformer(TransformerConfig(d_model=d, n_layers=sublayers, n_heads=heads, n_kv_heads=heads // 2,
                                                vocab_size=VOCAB, max_seq_len=seq,
                                                attn_res_mode=AttnResMode.BLOCK, n_blocks=8))


def logits_of(output):
    return output[0] if isinstance(output, tuple) else output


def train_loop(model, batches, recorder: StepRecorder | None) -> list[float]:
    """Seconds (process CPU) of each step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for step, (x, y) in enumerate(batches, start=1):
        tick = CLOCK()
        if recorder is not None and recorder.wants(step):
            recorder.begin(model, step)
        logits = logits_of(model(x))
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        if recorder is not None:
            recorder.end(step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(CLOCK() - tick)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="32 sublayers, d=256, batch 8 x 256")
    parser.add_argument("--steps", type=int, default=20, help="training steps per loop (default: %(default)s)")
    parser.add_argument("--every", type=int, default=10, help="record every k-th step (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sublayers, d, batch, seq = (32, 256, 8, 256) if args.full else (16, 128, 4, 128)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (args.steps, batch, seq + 1), generator=g)
    batches = [(w[:, :-1], w[:, 1:]) for w in data]
    print(f"{sublayers} sublayers, d={d}, batch {batch} x {seq}, {args.steps} steps, every {args.every}th recorded, "
          f"{args.rounds} rounds, {args.threads} thread(s)")
    for name, build in (("depthscope block_attnres", depthscope_block), ("attn-res block", attnres_block)):
        base = build(sublayers, d, seq)
        whole, plain_steps, recorded_steps = [], [], []
        for _ in range(args.rounds):
            plain = train_loop(copy.deepcopy(base), batches, None)
            folder = Path(tempfile.mkdtemp(prefix="depthscope-bench-"))
            try:
                recorder = StepRecorder(folder, every=args.every)
                recorded = train_loop(copy.deepcopy(base), batches, recorder)
                assert len(recorder.written) == args.steps // args.every
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            marked = set(range(args.every, args.steps + 1, args.every))
            whole.append(sum(recorded[1:]) / sum(plain[1:]))  # the first step warms up allocators
            plain_steps.append(statistics.median(plain[1:]))
            recorded_steps.append(statistics.median([recorded[s - 1] for s in sorted(marked)]))
        step, rec = statistics.median(plain_steps), statistics.median(recorded_steps)
        print(f"{name:26s} plain step {step * 1e3:6.0f} ms, recorded step {rec * 1e3:6.0f} ms "
              f"(+{(rec - step) * 1e3:.0f} ms); loop with every {args.every}th recorded "
              f"{statistics.median(whole):.2f}x (rounds {min(whole):.2f}-{max(whole):.2f}); every 100th: "
              f"{1 + (rec - step) / step / 100:.3f}x")


if __name__ == "__main__":
    main()
