"""Benchmark: the per-token weighted sum of sources as an embedding-bag lookup (`mix_rows` without autograd)
against the batched matmul it replaced, side by side, at the shapes of the benchmark models.

    python bench/row_mix.py                 # 8 x 256 tokens, d = 256, a bank of 9 sources (Block AttnRes, N = 8)
    python bench/row_mix.py --repeats 50

For each (rows, sources) it times both on the same inputs, interleaved, with the last-level cache flushed before
every call (inside a model the sources were written a sublayer ago and are no longer cached), and prints the
medians and their ratio. Rows = 4: Block AttnRes's phase one (S = 4 queries); rows = 1: a single mixer.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from depthscope.models.mixers.row_mix import mix_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--capacity", type=int, default=9, help="sources the bank holds")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(args.batch, args.tokens, args.capacity, args.d_model, generator=gen)
    flush = torch.empty(64 << 18)  # 64 MiB, larger than the last-level cache
    print(f"bank [{args.batch}, {args.tokens}, {args.capacity}, {args.d_model}] float32, "
          f"{torch.get_num_threads()} threads, medians of {args.repeats}, cache flushed before each call")
    print(f"{'rows':>5}{'sources':>9}{'matmul ms':>11}{'lookup ms':>11}{'matmul / lookup':>17}")
    with torch.no_grad():
        for rows in (4, 1):
            for n in (2, 4, 8, args.capacity):
                sources = bank[..., :n, :]  # [batch, tokens, n, d], a view into the bank
                weights = torch.softmax(torch.randn(args.batch, args.tokens, rows, n, generator=gen), dim=-1)
                torch.testing.assert_close(mix_rows(weights, sources), weights @ sources)
                times: dict[str, list[float]] = {"matmul": [], "lookup": []}
                for _ in range(args.repeats):
                    for name, run in (("matmul", lambda: weights @ sources), ("lookup", lambda: mix_rows(weights, sources))):
                        flush.fill_(1.0)
                        start = time.perf_counter()
                        run()
                        times[name].append(time.perf_counter() - start)
                matmul, lookup = (statistics.median(times[k]) * 1e3 for k in ("matmul", "lookup"))
                print(f"{rows:>5}{n:>9}{matmul:>11.2f}{lookup:>11.2f}{matmul / lookup:>16.2f}x")


if __name__ == "__main__":
    main()
