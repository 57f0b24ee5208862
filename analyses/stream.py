"""One function over every chunk of a run's array, on a few threads, the results handed back in chunk order.

A stored run read at its stored chunk size takes the fast road: each worker thread decodes a chunk into its
own reused buffer (probe LazyArray.read_block: zstd releases the GIL, so decoding overlaps across threads)
and applies the function there, so decompression and computation of different chunks run on all cores.
The reader's per-chunk NaN check is skipped on that road: the function is expected to check the weights it
uses and raise NaNWeightError, which is turned into the reader's RunError naming the chunk file. Any other
run (MemoryRun) or chunk size goes through `runs.iter_chunks` (read ahead in a thread) and the function runs
in the calling thread.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch

from depthscope.probe.reader import Run

from .errors import NaNWeightError
from .runs import chunk_size, iter_chunks

R = TypeVar("R")
MAX_WORKERS = 4


def default_workers() -> int:
    """Threads for `map_chunks`: the cores left over by torch's own intra-op threads (at least one, at most
    MAX_WORKERS), so that workers x torch threads does not oversubscribe the machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cores // max(1, torch.get_num_threads())))


def map_chunks(run, name: str, fn: Callable[[np.ndarray, int], R], chunk_tokens: int | None = None,
               workers: int | None = None) -> Iterator[R]:
    """fn(block, start) for each chunk of `name` (block [tokens, ...] numpy, start its first token), in order.

    fn must not keep `block`: on the fast road its buffer is reused for a later chunk. workers: threads on
    the fast road (default: default_workers()); at most 2 x workers chunks are in flight."""
    size = chunk_size(run, chunk_tokens)
    workers = default_workers() if workers is None else max(1, int(workers))
    if not isinstance(run, Run) or size != run.chunk_tokens or name not in run.arrays:
        for chunk in iter_chunks(run, [name], chunk_tokens):
            yield fn(chunk[name], chunk.start)
        return
    array = run.arrays[name]
    spans = array.blocks()
    local = threading.local()

    def task(number: int) -> R:
        out = getattr(local, "out", None)
        if out is None:
            out = local.out = np.empty((array.chunk_tokens, *array.shape[1:]), dtype=array.dtype)
        block = array.read_block(number, out=out, check=False)
        try:
            return fn(block, spans[number][0])
        except NaNWeightError:
            array.read_block(number)  # the reader's own check raises RunError naming the chunk file
            raise

    if workers == 1 or len(spans) <= 1:
        for number in range(len(spans)):
            yield task(number)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="depthscope-chunks") as pool:
        pending: deque = deque()
        try:
            for number in range(len(spans)):
                pending.append(pool.submit(task, number))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
