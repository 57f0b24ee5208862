"""Probe overhead on foreign models (through the built-in adapters) beside depthscope's own model, in one run.

    python bench/probe_foreign.py            # smaller models (16 sublayers, d=128, batch 4 x 128)
    python bench/probe_foreign.py --full     # the shape of `bench/probe.py --full`: 32 sublayers, d=256, 8 x 256

Models: depthscope's Full AttnRes (its own taps), attn-res's AttnResTransformer in Block mode (8 blocks) and a
Hugging Face Llama-style decoder (LlamaForCausalLM from a config), all with the same number of sublayers and width.
For each, as a ratio to the same model without a probe (process CPU time; per round, each variant is timed right
after a plain run, and the median of these per-round ratios is reported):
  memory    in-memory capture of every recorded quantity during an evaluation forward (+ commit)
  disk      capture to a run on disk during evaluation (target <= 1.30x)
  summary   summary mode during a training step: forward, backward, AdamW (target <= 1.05x)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from depthscope.models import DepthTransformer, ModelConfig
from depthscope.probe import Probe, RunWriter
from depthscope.probe.adapters import for_model

CLOCK = time.process_time
VOCAB = 256


def depthscope_model(blocks: int, d: int, seq: int):
    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer="full_attnres", n_layers=blocks, d_model=d, n_heads=max(1, d // 64),
                                         max_seq_len=max(seq, 32)))
    with torch.no_grad():  # non-uniform depth attention, as in a trained model
        model.mixer.depth.queries.normal_(0, 1.0)
    return model, lambda out: out


def attn_res_model(blocks: int, d: int, seq: int):
    from attn_res import AttnResMode, AttnResTransformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=d, n_layers=2 * blocks, n_heads=max(1, d // 64), n_kv_heads=max(1, d // 64),
                            vocab_size=VOCAB, max_seq_len=max(seq, 32), attn_res_mode=AttnResMode.BLOCK,
                            n_blocks=min(8, 2 * blocks))
    model = AttnResTransformer(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pseudo_query"):
                p.normal_(0, 1.0)
    return model, lambda out: out


def llama_model(blocks: int, d: int, seq: int):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=d, intermediate_size=4 * d, num_hidden_layers=blocks,
                                   num_attention_heads=max(1, d // 64), num_key_value_heads=max(1, d // 64),
                                   vocab_size=VOCAB, max_position_embeddings=max(seq, 32), use_cache=False)
    return transformers.LlamaForCausalLM(cfg), lambda out: out.logits


MODELS = {"depthscope Full AttnRes": depthscope_model, "attn-res Block": attn_res_model, "HF Llama": llama_model}


def paired(plain: Callable[[int], None], variants: dict[str, Callable[[int], None]], rounds: int) -> dict[str, float]:
    """Per variant, the median over rounds of (its CPU time / that of a plain run just before it); round 0 warms
    up. Pairing each run with its own plain run cancels slow drifts of the machine's load."""
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    plain_times: list[float] = []
    for r in range(rounds + 1):
        for name, variant in variants.items():
            tick = CLOCK()
            plain(r)
            base = CLOCK() - tick
            tick = CLOCK()
            variant(r)
            if r:
                ratios[name].append((CLOCK() - tick) / base)
                plain_times.append(base)
    out = {name: statistics.median(v) for name, v in ratios.items()}
    out["plain_s"] = statistics.median(plain_times)
    return out


def bench_eval(model, xs, rounds, tmp: Path) -> dict[str, float]:
    model.eval()

    def plain(r):
        for x in xs:
            model(x)

    def memory(r):
        with Probe(model, memory=True) as probe:
            for x in xs:
                model(x)
                probe.commit()

    def disk(r):
        path = tmp / f"disk-{r}-{time.monotonic_ns()}"
        with Probe(model, out=RunWriter(path)) as probe:
            for x in xs:
                model(x)
                probe.commit()
        shutil.rmtree(path, ignore_errors=True)

    with torch.no_grad():
        t = paired(plain, {"memory": memory, "disk": disk}, rounds)
    return {"memory": t["memory"], "disk": t["disk"], "forward_s": t["plain_s"] / len(xs)}


def bench_train(model, logits_of, x, rounds) -> dict[str, float]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs, targets = x[:, :-1], x[:, 1:]

    def step():
        logits = logits_of(model(inputs))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    probe = Probe(model, summary=True)

    def summary(r):
        with probe:
            step()
            probe.commit(step=r)

    t = paired(lambda r: step(), {"summary": summary}, rounds)
    model.eval()
    return {"summary": t["summary"], "step_s": t["plain_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="16 blocks (32 sublayers), d=256, batch 8 x 256")
    parser.add_argument("--rounds", type=int, help="timing rounds per comparison (default 7, --full 5)")
    parser.add_argument("--batches", type=int, help="evaluation batches per round (default 8, --full 4)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 = torch's choice)")
    args = parser.parse_args(argv)
    blocks, d, batch, seq = (16, 256, 8, 256) if args.full else (8, 128, 4, 128)
    rounds = args.rounds or (5 if args.full else 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randint(0, VOCAB, (batch, seq), generator=g) for _ in range(args.batches or (4 if args.full else 8))]
    train_x = torch.randint(0, VOCAB, (batch, seq + 1), generator=g)
    print(f"probe overhead on foreign models: {2 * blocks} sublayers, d={d}, batch {batch} x {seq}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; process CPU time; median of {rounds} per-round ratios to a plain run just before")
    print(f"{'model':<26} {'adapter':<28} {'forward':>9} {'memory':>8} {'disk':>8} {'summary':>8}")
    tmp = Path(tempfile.mkdtemp(prefix="depthscope-bench-foreign-"))
    try:
        for name in args.models.split(","):
            model, logits_of = MODELS[name](blocks, d, seq)
            adapter = for_model(model)
            evaluation = bench_eval(model, xs, rounds, tmp)
            training = bench_train(model, logits_of, train_x, rounds)
            print(f"{name:<26} {adapter.name if adapter else 'its own taps':<28} {evaluation['forward_s'] * 1000:7.0f}ms "
                  f"{evaluation['memory']:7.3f}x {evaluation['disk']:7.3f}x {training['summary']:7.3f}x", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("targets: disk <= 1.30x, summary <= 1.05x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
