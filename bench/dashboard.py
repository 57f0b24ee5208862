"""Dashboard server time on a large run: one million tokens x 32 sublayers (+ the final mixer), synthetic.

    python bench/dashboard.py                         # Block AttnRes N=8 layout, 1M tokens (written once, reused)
    python bench/dashboard.py --mixer full            # Full AttnRes layout (33 sources per row: ~2.2 GB of weights)
    python bench/dashboard.py --tokens 200000 --repeats 3  # quicker

The run is written with the probe's own RunWriter (the real on-disk format), with structured synthetic weights
(locality, embedding weight, a few learned skips, per-token noise). Then it times, on the server side:
opening the run, the one-off aggregation pass (in the app it runs in a background thread while the page shows
progress), and every view behind a callback, called as a function, including the JSON serialisation of the
figure that Dash sends. Each timed call starts with the dashboard's decoded-chunk cache emptied, so a repeat
measures an uncached answer (in the app, the heatmap and the clicked cell of one filter share those chunks).
Target: every callback <= 300 ms.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import plotly.io as pio
import torch

from depthscope.models.vocabulary import axis_label, block_sources, full_sources
from depthscope.probe import RunWriter, open_run
from depthscope.probe.batch import BatchRecord
from depthscope.probe.layout import Layout

TARGET_MS = 300.0


def layout_for(mixer: str, n_layers: int, n_blocks: int) -> Layout:
    L = 2 * n_layers
    labels = [axis_label(l, L) for l in range(1, L + 2)]  # attn1, mlp1, ..., final
    if mixer == "full":
        sources = [full_sources(l) for l in range(1, L + 2)]
    else:
        size = L // n_blocks
        sources = [block_sources(i // size + 1, i % size > 0) for i in range(L)]  # sublayer i + 1
        sources.append(block_sources(n_blocks + 1, False))  # the final mixer: every completed block
    return Layout(sublayers=list(range(1, L + 2)), sublayer_labels=labels, source_labels=sources,
                  quantities=["alpha", "input_rms", "output_rms", "grad_rms"], grads=True)


def synthesize(path: Path, mixer: str, tokens: int, n_layers: int, n_blocks: int, batch: int = 8192, seed: int = 0):
    """Write a synthetic run of `tokens` tokens with the probe's RunWriter."""
    lay = layout_for(mixer, n_layers, n_blocks)
    n, s = lay.n_slots, lay.max_sources
    rng = np.random.default_rng(seed)
    valid = lay.valid  # [n, s]
    ns = lay.n_sources
    # base logits: the most recent source and the embedding favoured, plus a few fixed skips
    base = np.zeros((n, s), dtype=np.float32)
    for i in range(n):
        base[i, max(ns[i] - 1, 0)] += 2.0
        base[i, 0] += 1.0
        if ns[i] > 4:
            base[i, rng.integers(1, ns[i] - 2)] += 1.5
    writer = RunWriter(path, chunk_tokens=8192, overwrite=True, meta={
        "model": {"kind": f"{mixer}_attnres", "class": "synthetic", "config": {
            "n_layers": n_layers, "d_model": 256, "n_heads": 8, "mixer": f"{mixer}_attnres", "n_blocks": n_blocks}},
        "corpus": "synthetic", "tokenizer": {"kind": "bytes-utf8"}, "synthetic": True})
    writer.begin(lay, {})
    text = np.frombuffer(("the quick brown fox jumps over the lazy dog. " * 50).encode(), dtype=np.uint8)
    depth_growth = np.exp(np.linspace(0, 2, n)).astype(np.float32)
    done, step = 0, 0
    while done < tokens:
        m = min(batch, tokens - done)
        noise = rng.standard_normal((m, 1, s)).astype(np.float32) * 0.8  # per-token preference shared by sublayers
        logits = base[None] + noise + rng.standard_normal((m, n, s)).astype(np.float32) * 0.3
        logits[:, ~valid] = -np.inf
        logits -= logits.max(-1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(-1, keepdims=True)
        w[:, ~valid] = np.nan
        idx = (np.arange(done, done + m) % len(text))
        rms = (depth_growth[None] * np.exp(rng.standard_normal((m, n)).astype(np.float32) * 0.3))
        record = BatchRecord(
            layout=lay, step=step,
            token=torch.from_numpy(text[idx].astype(np.int64))[None],
            document=torch.from_numpy((np.arange(done, done + m) // 1000).astype(np.int64))[None],
            position=torch.from_numpy((np.arange(done, done + m) % 1000).astype(np.int64))[None],
            loss=torch.from_numpy(rng.random(m, dtype=np.float32) * 3)[None],
            alpha=torch.from_numpy(w.astype(np.float16))[None],
            input_rms=torch.from_numpy(rms)[None], output_rms=torch.from_numpy(rms * 0.5)[None],
            grad_rms=torch.from_numpy(1e-3 / rms)[None],
            grad_norms=torch.from_numpy((rng.random(n) + 0.5).astype(np.float32)),
        )
        writer.write(record)
        done += m
        step += 1
    writer.close(True)


def timed(fn, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append((time.perf_counter() - t) * 1000)
    return value, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=16, help="transformer blocks (2 sublayers each)")
    parser.add_argument("--blocks", type=int, default=8, help="Block AttnRes N (--mixer block)")
    parser.add_argument("--mixer", choices=("block", "full"), default="block")
    parser.add_argument("--dir", default="/tmp/depthscope-bench/runs", help="runs folder for the synthetic run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the timings as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from depthscope.dashboard import views
    from depthscope.dashboard.aggregate import pass_workers
    from depthscope.dashboard.runs import Catalogue

    root = Path(args.dir)
    name = f"synthetic_{args.mixer}_{args.tokens}"
    path = root / name
    if args.regenerate and path.exists():
        shutil.rmtree(path)
    if not (path / "manifest.json").exists() or not open_run(path).complete:
        t = time.perf_counter()
        synthesize(path, args.mixer, args.tokens, args.layers, args.blocks)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    cat = Catalogue(root, background=False)
    _, t_open = timed(lambda: cat.open(name), 1)
    run = cat.open(name)
    print(f"run: {run.n_tokens:,} tokens x {len(run.sublayers)} sublayer-axis positions x {run.max_sources} sources "
          f"({args.mixer}), {size / 1e9:.2f} GB on disk")
    t, cpu = time.perf_counter(), time.process_time()
    data = cat.data(name)
    t_agg, cpu_agg = time.perf_counter() - t, time.process_time() - cpu
    t = time.perf_counter()
    views.routing_stats(cat, {"run": name})
    t_stats = time.perf_counter() - t
    print(f"open: {t_open[0]:.0f} ms; one-off aggregation pass: {t_agg:.1f} s; analyses.routing_stats (one-off, "
          f"cached): {t_stats:.1f} s  (both run in a background thread in the app)")
    print(f"aggregation pass: {cpu_agg:.1f} s CPU on {pass_workers()} worker threads (on a shared machine the wall "
          f"time follows the cores left free)")

    mid = run.n_tokens // 2
    base = {"run": name}
    cases = {
        "routing (all tokens)": ("routing", {}),
        "routing, token range": ("routing", {"start": run.n_tokens // 8 + 1, "stop": run.n_tokens * 2 // 3 + 3}),
        "routing, document": ("routing", {"doc": (mid // 1000)}),
        "routing, regex [aeiou]": ("routing", {"regex": "[aeiou]"}),
        "routing, range + regex (sampled)": ("routing", {"start": 1000, "stop": run.n_tokens - 1000, "regex": "o"}),
        "routing, document + regex": ("routing", {"doc": 5, "regex": "[a-z]"}),
        "cell click (all tokens)": ("cell", {"cell": "20,1"}),
        "cell click, token range": ("cell", {"cell": "20,1", "start": 10_000, "stop": 30_000}),
        "cell click, range + regex (sampled)": ("cell", {"cell": "20,1", "start": 0, "stop": run.n_tokens, "regex": "e"}),
        "tokens: coloured text (512)": ("tokens", {"wstart": mid, "wlen": 512, "stat": "long_range"}),
        "tokens: token x sublayer heatmap": ("token_heatmap", {"wstart": mid, "wlen": 512, "stat": "norm_entropy"}),
        "tokens: clicked token routing": ("token_routing", {"token": mid}),
        "tokens: clicked token norms": ("token_norms", {"token": mid}),
        "signal (percentile bands)": ("signal", {"baseline": name, "quantity": "input_rms"}),
        "gradients": ("gradients", {"baseline": name}),
        "statistics: long-range per sublayer": ("long_range", {}),
        "statistics: jumps": ("jumps", {}),
        "statistics: sinks": ("sinks", {}),
        "compare (shared scale + difference)": ("compare", {"other": name}),
    }
    results = {}
    print(f"\n{'callback (server time: view + figure JSON)':<44} {'median ms':>10} {'max ms':>8}")
    for label, (figure, extra) in cases.items():
        spec = views.FIGURES[figure]
        params = {**base, **{k: str(v) for k, v in extra.items()}}
        def build():
            data.clear_caches()  # uncached: no chunk decoded by an earlier call is reused
            return pio.to_json(spec.build(cat, params), validate=False)

        build()  # warm-up: the server answers every later request warm (imports, cached analyses)
        _, times = timed(build, args.repeats)
        med, worst = statistics.median(times), max(times)
        results[label] = {"median_ms": med, "max_ms": worst}
        flag = "" if worst <= TARGET_MS else "  OVER 300 ms"
        print(f"{label:<44} {med:>10.1f} {worst:>8.1f}{flag}")
    worst = max(r["max_ms"] for r in results.values())
    print(f"\nslowest callback: {worst:.0f} ms (target {TARGET_MS:.0f} ms): {'OK' if worst <= TARGET_MS else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tokens": run.n_tokens, "mixer": args.mixer, "open_ms": t_open[0],
                                               "aggregate_s": t_agg, "aggregate_cpu_s": cpu_agg,
                                               "routing_stats_s": t_stats, "callbacks": results}, indent=1))


if __name__ == "__main__":
    main()
