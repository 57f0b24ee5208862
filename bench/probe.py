"""Benchmark of depthscope.probe, every figure measured side by side in one run on the same model.

    python bench/probe.py                 # a smaller default model (16 sublayers, d=128), a couple of minutes
    python bench/probe.py --full          # the issue's sizes: 32 sublayers, d=256, batch 8 x 256, 1M tokens

Prints:
  1. in-memory capture (alpha + input/output RMS of every sublayer) three ways: depthscope, plain PyTorch
     forward hooks written by hand (the floor) and nnsight (when importable), as time added to a forward, at
     the main batch shape and at batch 1 x 32 where fixed per-call costs dominate;
  2. capture to disk during evaluation vs no probe (ratio; target <= 1.30x);
  3. summary mode during a training step (forward, backward, AdamW) vs no probe (ratio; target <= 1.05x);
  4. the run store alone: tokens per second written, bytes per token on disk, peak memory at 100k and 1M tokens.

Timings interleave the variants round by round and report medians, so that load on the machine affects them
alike. nnsight is optional (never a dependency of depthscope): install it in a separate environment, pinned so
that torch stays below 2.14 (e.g. `pip install nnsight==0.8.1 torch==2.13.0`); without it the nnsight rows say
"unavailable".
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
import torch.nn.functional as F

from depthscope.models import DepthTransformer, ModelConfig, iter_taps
from depthscope.probe import BatchRecord, Probe, RunWriter
from depthscope.probe.store import DEFAULT_CHUNK_TOKENS


CLOCK = time.process_time  # CPU time of this process (all its threads); --wall switches to wall-clock time


def build_model(layers: int, d_model: int, seq: int) -> DepthTransformer:
    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer="full_attnres", n_layers=layers, d_model=d_model,
                                         n_heads=max(1, d_model // 64), max_seq_len=max(seq, 32)))
    with torch.no_grad():  # non-uniform depth attention, as in a trained model
        model.mixer.depth.queries.normal_(0, 1.0)
    return model.eval()


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


# -------------------------------------------------------------------------------------------- in-memory capture


class HandHooks:
    """What a user writes by hand: forward hooks that keep fp16 weights and per-token RMS in lists."""

    def __init__(self, model):
        self.model, self.store, self.handles = model, [], []

    def __enter__(self):
        store = self.store

        def alpha_hook(module, args, out):
            store.append(out.detach().to(torch.float16))

        def rms_hook(module, args, out):
            store.append(out.detach().float().pow(2).mean(-1).sqrt())

        for _, tap in iter_taps(self.model):
            if tap.what in ("alpha", "input", "output", "residual"):
                self.handles.append(tap.register_forward_hook(alpha_hook if tap.what == "alpha" else rms_hook))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def nnsight_runner(model, x):
    """A function running one nnsight trace that saves the same quantities; None if nnsight is unavailable."""
    try:
        from nnsight import NNsight
    except Exception as err:  # ImportError, or an nnsight that fails to import
        return None, f"unavailable ({type(err).__name__}: {err})"
    import nnsight

    order: list[str] = []
    handles = [tap.register_forward_hook(lambda m, a, o, n=name: order.append(n)) for name, tap in iter_taps(model)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    modules = dict(model.named_modules())
    wrapped = NNsight(model)

    def envoy(name):
        node = wrapped
        for part in name.split("."):
            node = node[int(part)] if part.isdigit() else getattr(node, part)
        return node

    # nnsight requires access in execution order
    plan = [(envoy(n), modules[n].what == "alpha") for n in order if modules[n].what in ("alpha", "input", "output")]

    def run(inputs):
        saved = []
        with wrapped.trace(inputs):
            for env, is_alpha in plan:
                if is_alpha:
                    saved.append(env.output.to(torch.float16).save())
                else:
                    saved.append(env.output.float().pow(2).mean(-1).sqrt().save())
        return saved

    return run, f"nnsight {nnsight.__version__}"


def time_inside_hooks(model, batch: int, seq: int, rounds: int) -> dict:
    """A second, less noisy view: CPU time spent inside the hooks (and depthscope's commit) per forward, by
    wrapping every registered forward hook with a timer. It leaves out torch's own cost of dispatching to hooks
    (about 2 us per hooked module call). Reading the clock costs about the same in both. nnsight has no hooks to wrap, so it has no figure here."""
    x = torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(1))
    spent = [0.0]

    def wrap_hooks():
        for module in model.modules():
            for store in (module._forward_hooks, module._forward_pre_hooks):
                for key, hook in list(store.items()):
                    def timed(*args, _hook=hook, **kwargs):
                        tick = CLOCK()
                        try:
                            return _hook(*args, **kwargs)
                        finally:
                            spent[0] += CLOCK() - tick
                    store[key] = timed

    results: dict[str, list[float]] = {"depthscope": [], "hand hooks": []}
    with torch.no_grad():
        for r in range(rounds + 1):
            for name in results:
                spent[0] = 0.0
                if name == "depthscope":
                    with Probe(model, memory=True) as probe:
                        wrap_hooks()
                        model(x)
                        tick = CLOCK()
                        probe.commit()
                        spent[0] += CLOCK() - tick
                else:
                    with HandHooks(model):
                        wrap_hooks()
                        model(x)
                if r:
                    results[name].append(spent[0])
    return {name: median_ms(v) for name, v in results.items()}


def bench_memory_capture(model, batch: int, seq: int, rounds: int, per_round: int) -> dict:
    x = torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(1))
    nn_run, nn_note = nnsight_runner(model, x)
    times: dict[str, list[float]] = {"plain": [], "depthscope": [], "hand hooks": [], "nnsight": []}

    hand = HandHooks(model)
    probe = Probe(model, memory=True)

    def forwards(name):
        """per_round forwards of one variant; attaching and detaching hooks stay outside the timing."""
        if name == "hand hooks":
            hand.__enter__()
        elif name == "depthscope":
            probe.__enter__()
        tick = CLOCK()
        for _ in range(per_round):
            if name == "nnsight":
                nn_run(x)
            else:
                model(x)
                if name == "depthscope":
                    probe.commit()
                    probe.memory.records.clear()
                elif name == "hand hooks":
                    hand.store.clear()
        elapsed = (CLOCK() - tick) / per_round
        if name == "hand hooks":
            hand.__exit__(None, None, None)
            hand.handles.clear()
        elif name == "depthscope":
            probe.__exit__(None, None, None)
        return elapsed

    names = ["depthscope", "hand hooks"] + (["nnsight"] if nn_run is not None else [])
    added: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in ["plain"] + names:  # warm-up
            forwards(name)
        for r in range(rounds):
            # each variant is paired with a plain run right before it: slow drifts of the machine's load cancel
            for name in names[r % len(names):] + names[: r % len(names)]:
                base = forwards("plain")
                times["plain"].append(base)
                added[name].append(forwards(name) - base)
    out = {"shape": f"{batch} x {seq}", "forward_ms": median_ms(times["plain"]), "nnsight_note": nn_note}
    for name in names:
        out[name] = median_ms(added[name])
    return out


# -------------------------------------------------------------------------------------------- eval capture to disk


def bench_disk_capture(model, batch, seq, rounds, batches_per_round, chunk_tokens, tmp: Path) -> dict:
    g = torch.Generator().manual_seed(2)
    xs = [torch.randint(0, 256, (batch, seq), generator=g) for _ in range(batches_per_round)]
    plain_t, probe_t = [], []
    with torch.no_grad():
        model(xs[0])
        for r in range(rounds + 1):  # round 0 warms up
            for variant in (("plain", "probe") if r % 2 == 0 else ("probe", "plain")):
                tick = CLOCK()
                if variant == "plain":
                    for x in xs:
                        model(x)
                else:
                    path = tmp / f"disk-{r}"
                    with Probe(model, out=RunWriter(path, chunk_tokens=chunk_tokens)) as probe:
                        for x in xs:
                            model(x)
                            probe.commit()
                elapsed = CLOCK() - tick
                if r:
                    (plain_t if variant == "plain" else probe_t).append(elapsed)
            shutil.rmtree(tmp / f"disk-{r}", ignore_errors=True)
    return {"plain_ms": median_ms(plain_t) / batches_per_round, "probe_ms": median_ms(probe_t) / batches_per_round,
            "ratio": statistics.median(probe_t) / statistics.median(plain_t),
            "tokens": batches_per_round * batch * seq}


# -------------------------------------------------------------------------------------------- training step


def bench_training(model, batch, seq, rounds, grads: bool) -> dict:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (batch, seq + 1), generator=g)
    inputs, targets = x[:, :-1], x[:, 1:]

    def step():
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    plain_t, probe_t = [], []
    probe = Probe(model, summary=True, grads=grads)
    step()
    with probe:
        step()
        probe.commit()
    for r in range(rounds):
        for variant in (("plain", "probe") if r % 2 == 0 else ("probe", "plain")):
            tick = CLOCK()
            if variant == "plain":
                step()
                plain_t.append(CLOCK() - tick)
            else:
                with probe:
                    step()
                    probe.commit(step=r)
                probe_t.append(CLOCK() - tick)
    model.eval()
    return {"plain_ms": median_ms(plain_t), "probe_ms": median_ms(probe_t),
            "ratio": statistics.median(probe_t) / statistics.median(plain_t)}


# -------------------------------------------------------------------------------------------- the store alone


def synthetic_records(model, batch, seq, count=8) -> list[BatchRecord]:
    """Records with the model's layout and random (softmax of N(0, 2) logits) weights, built once."""
    with Probe(model, memory=True) as probe:
        with torch.no_grad():
            model(torch.zeros(1, 2, dtype=torch.long))
    layout = probe.layout
    valid = torch.from_numpy(layout.valid)
    g = torch.Generator().manual_seed(4)
    records = []
    n, s = layout.n_slots, layout.max_sources
    for i in range(count):
        logits = torch.randn(batch, seq, n, s, generator=g) * 2
        alpha = torch.softmax(logits.masked_fill(~valid, -math.inf), -1).masked_fill(~valid, math.nan)
        rms = lambda: torch.rand(batch, seq, n, generator=g) + 0.5  # noqa: E731
        records.append(BatchRecord(
            layout=layout, step=i, token=torch.randint(0, 256, (batch, seq), generator=g),
            document=torch.full((batch, seq), i), position=torch.arange(seq).expand(batch, seq),
            loss=torch.rand(batch, seq, generator=g) * 4, alpha=alpha.to(torch.float16),
            input_rms=rms(), output_rms=rms(),
        ))
    return records


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_store(records, sizes, chunk_tokens, tmp: Path) -> list[dict]:
    out = []
    per = records[0].n_tokens
    for tokens in sizes:
        path = tmp / f"store-{tokens}"
        gc.collect()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tracemalloc.start()
        writer = RunWriter(path, chunk_tokens=chunk_tokens)
        writer.begin(records[0].layout, {"model": {"kind": "synthetic"}})
        n = math.ceil(tokens / per)
        tick = CLOCK()
        for i in range(n):
            writer.write(records[i % len(records)])
        writer.close(True)
        elapsed = CLOCK() - tick
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = du(path)
        out.append({"tokens": n * per, "tokens_per_s": n * per / elapsed, "bytes_per_token": size / (n * per),
                    "disk_mb": size / 1e6, "traced_peak_mb": traced_peak / 1e6,
                    "max_rss_mb": rss_after, "max_rss_growth_mb": rss_after - rss_before})
        shutil.rmtree(path, ignore_errors=True)
    return out


# -------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the issue's sizes: 16 blocks (32 sublayers), d=256, batch 8 x 256, store at 100k and 1M tokens")
    parser.add_argument("--layers", type=int, help="transformer blocks (sublayers = 2x); default 8, --full 16")
    parser.add_argument("--d-model", type=int, help="default 128, --full 256")
    parser.add_argument("--batch", type=int, help="default 4, --full 8")
    parser.add_argument("--seq", type=int, help="default 128, --full 256")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per comparison (default 7, --full 5)")
    parser.add_argument("--store-tokens", default=None,
                        help="comma-separated token counts for the store benchmark (default 100000; --full 100000,1000000)")
    parser.add_argument("--chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier timings on a shared machine; 0 = torch's choice)")
    parser.add_argument("--wall", action="store_true",
                        help="time with the wall clock (default: process CPU time, robust to other load on the machine)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: memory,disk,train,store")
    args = parser.parse_args(argv)
    full = args.full
    layers = args.layers or (16 if full else 8)
    d_model = args.d_model or (256 if full else 128)
    batch = args.batch or (8 if full else 4)
    seq = args.seq or (256 if full else 128)
    rounds = args.rounds or (5 if full else 7)
    sizes = [int(s) for s in (args.store_tokens or ("100000,1000000" if full else "100000")).split(",")]
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter

    model = build_model(layers, d_model, seq)
    print(f"depthscope probe benchmark: Full AttnRes, {2 * layers} sublayers, d={d_model}, "
          f"{model.num_parameters() / 1e6:.1f}M parameters; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{'wall-clock' if args.wall else 'process CPU'} time")
    tmp = Path(tempfile.mkdtemp(prefix="depthscope-bench-"))
    try:
        if "memory" not in skip:
            print("\n1. in-memory capture: time added to one forward (median over rounds of the difference to a plain "
                  "forward run just before)")
            for b, t, per in ((batch, seq, 1 if full else 3), (1, 32, 30)):
                res = bench_memory_capture(model, b, t, rounds, per)
                nn = res.get("nnsight")
                ratio = f"{res['depthscope'] / nn:.2f}" if nn else "n/a"
                print(f"   batch {res['shape']:>9}: forward {res['forward_ms']:8.2f} ms | added: depthscope "
                      f"{res['depthscope']:7.2f} ms, hand hooks {res['hand hooks']:7.2f} ms, nnsight "
                      + (f"{nn:7.2f} ms" if nn is not None else "unavailable")
                      + f" | depthscope/nnsight {ratio} (target <= 0.5)")
            print(f"   ({res['nnsight_note']})")
            for b, t in ((batch, seq), (1, 32)):
                inside = time_inside_hooks(model, b, t, max(rounds, 5))
                print(f"   batch {f'{b} x {t}':>9}: CPU time inside the hooks per forward: depthscope "
                      f"{inside['depthscope']:.2f} ms (hooks + commit), hand hooks {inside['hand hooks']:.2f} ms")
        if "disk" not in skip:
            res = bench_disk_capture(model, batch, seq, rounds, 4 if full else 8, args.chunk_tokens, tmp)
            print(f"\n2. capture to disk in evaluation ({res['tokens']} tokens a round): no probe {res['plain_ms']:.1f} ms "
                  f"per batch, with probe {res['probe_ms']:.1f} ms -> {res['ratio']:.3f}x (target <= 1.30x)")
        if "train" not in skip:
            print("\n3. summary mode during a training step (forward + backward + AdamW):")
            for grads in (False, True):
                res = bench_training(model, batch, seq, rounds, grads)
                print(f"   grads={str(grads):5}: no probe {res['plain_ms']:.1f} ms, with probe {res['probe_ms']:.1f} ms"
                      f" -> {res['ratio']:.3f}x (target <= 1.05x)")
        if "store" not in skip:
            print(f"\n4. the run store alone (synthetic records of this layout, batch {batch} x {seq}, chunks of "
                  f"{args.chunk_tokens} tokens, zstd):")
            records = synthetic_records(model, batch, seq)
            for res in bench_store(records, sizes, args.chunk_tokens, tmp):
                print(f"   {res['tokens']:>9} tokens: {res['tokens_per_s']:>10,.0f} tokens/s, {res['bytes_per_token']:.0f} "
                      f"bytes/token ({res['disk_mb']:.0f} MB), peak traced (numpy + zarr) {res['traced_peak_mb']:.1f} MB, "
                      f"max RSS {res['max_rss_mb']:.0f} MB (+{res['max_rss_growth_mb']:.0f} MB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
