"""Benchmark: routing statistics streamed over a large synthetic run, against a straightforward pandas version.

    python bench/analyses.py                      # 1,000,000 tokens x 32 sublayers x 33 sources (~2.1 GB fp16)
    python bench/analyses.py --tokens 250000      # smaller; the figures are scaled to 1M tokens and say so

The run is written once with the probe's own RunWriter (Zarr v3, zstd, float16) into --dir and reused. Its
sublayer axis is that of a 16-layer Full AttnRes model (L = 32) without sublayer 1: mlp1 .. mlp16 and the final
mixer, i.e. 32 positions with 2 .. 33 sources (33 = max_sources); weights are softmaxes of random logits.

`routing_stats` runs in a fresh child process, so its peak resident memory (VmHWM of /proc/self/status; ru_maxrss
where that is missing, which Linux carries over from the parent across exec) is its own; the target is <= 5 s
per million tokens and a peak well under the array's size. The pandas baseline (long format,
groupby) runs on the first --pandas-tokens tokens and is scaled linearly to the same token count.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_LAYERS = 16
SUBLAYERS = list(range(2, 2 * N_LAYERS + 2))  # 2..33: 32 positions, the last is the final mixer (33 sources)


def labels_for(l: int) -> list[str]:
    from depthscope.models.vocabulary import sublayer_label

    return [sublayer_label(i) for i in range(l)]


def make_run(path: Path, tokens: int, chunk: int = 8192, seed: int = 0) -> None:
    import torch

    from depthscope.probe import RunWriter
    from depthscope.probe.batch import BatchRecord
    from depthscope.probe.layout import Layout, default_label

    label = default_label(2 * N_LAYERS)
    layout = Layout(sublayers=SUBLAYERS, sublayer_labels=[label(l) for l in SUBLAYERS],
                    source_labels=[labels_for(l) for l in SUBLAYERS], quantities=["alpha", "input_rms"])
    n, s = layout.n_slots, layout.max_sources
    valid = torch.from_numpy(layout.valid)
    writer = RunWriter(path, chunk_tokens=chunk, overwrite=True,
                       meta={"model": {"kind": "full_attnres", "config": None}, "corpus": "synthetic"})
    writer.begin(layout, {})
    g = torch.Generator().manual_seed(seed)
    written, step = 0, 0
    # a fixed per-sublayer preference (locality plus a few skips) and per-token noise
    pref = torch.randn(n, s, generator=g) + 3.0 * (torch.arange(s)[None, :] == (torch.tensor(SUBLAYERS)[:, None] - 1))
    while written < tokens:
        t = min(chunk, tokens - written)
        logits = pref + 1.5 * torch.randn(t, n, s, generator=g)
        logits = logits.masked_fill(~valid, -math.inf)
        alpha = torch.softmax(logits, -1).masked_fill(~valid, math.nan).to(torch.float16)
        ids = torch.arange(written, written + t)
        record = BatchRecord(layout=layout, step=step, token=(ids % 256).view(1, t), document=(ids // 2048).view(1, t),
                             position=(ids % 2048).view(1, t), loss=torch.rand(1, t), alpha=alpha.view(1, t, n, s),
                             input_rms=torch.rand(1, t, n) + 0.5)
        writer.write(record)
        written += t
        step += 1
    writer.close(True)


def peak_rss_kib() -> float:
    """This process's peak resident memory in KiB: VmHWM (its own address space), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(path: str, chunk: int | None, threads: int) -> None:
    """Time routing_stats on the run and print JSON (seconds, peak RSS)."""
    import torch

    torch.set_num_threads(threads)
    from depthscope.analyses.routing import routing_stats
    from depthscope.probe import open_run

    before = peak_rss_kib()
    run = open_run(path)
    started, cpu = time.perf_counter(), time.process_time()
    result = routing_stats(run, chunk_tokens=chunk)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = peak_rss_kib()
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak / 1024, "rss_before_mib": before / 1024,
                      "tokens": run.n_tokens, "locality": float(result.by_kind.set_index("kind").loc["all", "locality"])}))


def read_only(path: str, chunk: int | None) -> float:
    from depthscope.probe import open_run

    run = open_run(path)
    started = time.perf_counter()
    for _ in run.iter_chunks(["alpha"], chunk):
        pass
    return time.perf_counter() - started


def pandas_baseline(path: str, tokens: int, k: int = 4) -> tuple[float, float, int]:
    """Long format + groupby: mean share per source, locality, long-range mass, embedding, entropy, top source."""
    import pandas as pd

    from depthscope.probe import open_run

    run = open_run(path)
    alpha = run.alpha[:tokens].astype(np.float32)  # [T, n, S]
    t, n, s = alpha.shape
    started, cpu = time.perf_counter(), time.process_time()
    tok, slot, src = np.meshgrid(np.arange(t), np.arange(n), np.arange(s), indexing="ij")
    df = pd.DataFrame({"token": tok.ravel(), "slot": slot.ravel(), "source": src.ravel(), "w": alpha.ravel()})
    df = df.dropna(subset=["w"])
    df["consumer"] = df["slot"].map(dict(enumerate(SUBLAYERS)))
    df["distance"] = df["consumer"] - df["source"]
    df["p"] = df["w"] / df.groupby(["token", "slot"])["w"].transform("sum")
    mean_share = df.groupby(["slot", "source"])["p"].mean()
    nearest = df[df["distance"] == 1].groupby("slot")["p"].mean()
    long_range = df.assign(x=df["p"].where((df["distance"] > k) & (df["source"] > 0), 0.0)) \
        .groupby(["token", "slot"])["x"].sum().groupby("slot").mean()
    emb = df[df["source"] == 0].groupby("slot")["p"].mean()
    ent = df.assign(x=-df["p"] * np.log(df["p"].clip(lower=1e-30))).groupby(["token", "slot"])["x"].sum() \
        .groupby("slot").mean()
    top = df.loc[df.groupby(["token", "slot"])["p"].idxmax()]
    jump = ((top["distance"] > k) & (top["source"] > 0)).groupby(top["slot"]).mean()
    _ = (mean_share, nearest, long_range, emb, ent, jump)
    return time.perf_counter() - started, time.process_time() - cpu, t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/depthscope-bench-analyses")
    parser.add_argument("--pandas-tokens", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=None, help="tokens per analysed chunk (default: stored chunk)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the analysing process (default 1: routing_stats then runs one "
                             "worker thread per core, each decoding and analysing whole chunks)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = Path(args.dir) / f"run-{args.tokens}"
    if args.child:
        child(str(path), args.chunk, args.threads)
        return
    from depthscope.probe import open_run

    try:
        ready = open_run(path).complete and open_run(path).n_tokens == args.tokens
    except Exception:
        ready = False
    if not ready:
        started = time.perf_counter()
        make_run(path, args.tokens)
        print(f"wrote {path} in {time.perf_counter() - started:.1f} s")
    run = open_run(path)
    n, s = len(run.sublayers), run.max_sources
    nbytes = run.n_tokens * n * s * 2
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"run: {run.n_tokens:,} tokens x {n} sublayers x {s} sources; alpha {nbytes / 2**30:.2f} GiB float16 "
          f"({disk / 2**30:.2f} GiB on disk)")
    scale = 1_000_000 / run.n_tokens
    out = subprocess.run([sys.executable, __file__, "--child", "--tokens", str(args.tokens), "--dir", args.dir,
                          "--threads", str(args.threads)] + (["--chunk", str(args.chunk)] if args.chunk else []),
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    read_s = read_only(str(path), args.chunk)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (other processes share the cores)")
    print(f"routing_stats: {res['seconds']:.2f} s wall, {res['cpu_seconds']:.2f} s CPU (all threads of the "
          f"process) for {res['tokens']:,} tokens"
          + (f" (scaled to 1M tokens: {res['seconds'] * scale:.1f} s wall, {res['cpu_seconds'] * scale:.1f} s CPU)"
             if scale != 1 else ""))
    print(f"reading + decompressing alpha alone (probe reader, same chunks): {read_s:.2f} s wall; "
          f"target: routing_stats <= 5 s per 1M tokens")
    print(f"peak RSS of the analysing process: {res['peak_rss_mib']:.0f} MiB (interpreter + imports before: "
          f"{res['rss_before_mib']:.0f} MiB); alpha array: {nbytes / 2**20:.0f} MiB")
    pd_s, pd_cpu, pd_t = pandas_baseline(str(path), args.pandas_tokens)
    pd_scaled, pd_cpu_scaled = pd_s * run.n_tokens / pd_t, pd_cpu * run.n_tokens / pd_t
    print(f"pandas baseline: {pd_s:.2f} s wall, {pd_cpu:.2f} s CPU for {pd_t:,} tokens (in memory, reading "
          f"excluded) -> {pd_scaled:.1f} s wall, {pd_cpu_scaled:.1f} s CPU scaled to {run.n_tokens:,} tokens; "
          f"streamed routing_stats (reading included) is {pd_scaled / res['seconds']:.1f}x faster in wall time, "
          f"{pd_cpu_scaled / res['cpu_seconds']:.1f}x in CPU time")


if __name__ == "__main__":
    main()
