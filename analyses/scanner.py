"""One scan of a run: its chunks are decoded once, on a few worker threads, and any number of reducers collect
from that one read.

A reducer (`Reducer`) names the arrays it reads and has three steps:

    partial(chunk)  one chunk's share (chunk[name] [tokens, ...] numpy, chunk.start, chunk.stop); runs on a
                    worker thread, so it must be thread-safe and must not keep the chunk's arrays (their
                    buffers are reused for a later chunk);
    merge(part)     adds one partial; called on the calling thread, in chunk order;
    result()        the statistic, after the last merge.

`scan(run, reducers)` reads the union of the arrays the reducers need and returns a `ScanResults` mapping
(name -> result). A reducer that fails (unreadable chunk, bad weights, no tokens) keeps its error and is fed
no more chunks; asking for its result raises that error, so one broken array does not cost the statistics
of the others.

A stored run read at its stored chunk size takes the fast road: each worker decodes a chunk (zstd releases the
GIL, so decoding overlaps across threads) and runs every reducer's partial there. The depth-attention weights
are decoded into a per-thread buffer without the reader's NaN check: a reducer reading alpha checks the
weights it uses and raises NaNWeightError, which is turned into the reader's RunError naming the chunk file.
Any other run (MemoryRun) or chunk size goes through `runs.iter_chunks` (read ahead in a thread) and the
partials run on the calling thread.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from depthscope.probe import Chunk, Run, RunError

from .errors import AnalysisError, NaNWeightError
from .runs import chunk_size, iter_chunks, run_name

MAX_WORKERS = 4


class Reducer:
    """One statistic collected by a scan (module docstring). Subclasses set `arrays` and the three steps."""

    arrays: tuple[str, ...] = ()

    def partial(self, chunk: Chunk) -> Any:
        raise NotImplementedError

    def merge(self, part: Any) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError


class ScanResults(Mapping):
    """name -> result of each reducer of a scan; a reducer that failed raises its error when asked."""

    def __init__(self, reducers: dict[str, Reducer], errors: dict[str, BaseException]):
        self._reducers, self._errors, self._done = reducers, errors, {}

    def __getitem__(self, name: str) -> Any:
        if name in self._errors:
            raise self._errors[name]
        if name not in self._done:
            self._done[name] = self._reducers[name].result()
        return self._done[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._reducers)

    def __len__(self) -> int:
        return len(self._reducers)

    def error(self, name: str) -> BaseException | None:
        return self._errors.get(name)


def default_workers() -> int:
    """Threads of a scan: the cores left over by torch's own intra-op threads (at least one, at most
    MAX_WORKERS), so that workers x torch threads does not oversubscribe the machine."""
    return max(1, min(MAX_WORKERS, cores() // max(1, torch.get_num_threads())))


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def scan(run, reducers: dict[str, Reducer], chunk_tokens: int | None = None, workers: int | None = None,
         progress: Callable[[float], None] | None = None) -> ScanResults:
    """Feed every chunk of `run` to each reducer once (module docstring); name -> result.

    chunk_tokens: tokens per chunk (default: the run's stored chunk, the fast road). workers: threads on the
    fast road (default: default_workers()); at most 2 x workers chunks are in flight. progress(fraction) is
    called after each chunk is merged."""
    errors: dict[str, BaseException] = {}
    for name, reducer in reducers.items():
        missing = [a for a in reducer.arrays if a not in run.captured]
        if missing:
            errors[name] = AnalysisError(run_name(run), f"{name} needs {missing}, which this run did not capture "
                                                        f"(it holds {list(run.captured) or 'nothing'})")
    names = sorted({a for name, r in reducers.items() if name not in errors for a in r.arrays})
    if names and run.n_tokens:
        size = chunk_size(run, chunk_tokens)
        workers = default_workers() if workers is None else max(1, int(workers))
        fast = isinstance(run, Run) and size == run.chunk_tokens
        parts = _stored(run, reducers, names, errors, workers) if fast else _generic(run, reducers, names, errors, size)
        total = max(run.n_tokens, 1)
        for stop, outcome in parts:
            for name, part in outcome.items():
                if name in errors:
                    continue
                if isinstance(part, BaseException):
                    errors[name] = part
                    continue
                try:
                    reducers[name].merge(part)
                except Exception as err:  # noqa: BLE001 - kept for the caller, the other reducers go on
                    errors[name] = err
            if progress is not None:
                progress(min(stop / total, 0.999))
            if len(errors) == len(reducers):
                break
    if progress is not None:
        progress(1.0)
    return ScanResults(reducers, errors)


def _partials(reducers: dict[str, Reducer], chunk: Chunk, failed: dict, reread=None) -> dict[str, Any]:
    """Each live reducer's partial of one chunk (or the exception it raised)."""
    out: dict[str, Any] = {}
    for name, reducer in reducers.items():
        if name in failed:
            continue
        bad = [a for a in reducer.arrays if isinstance(chunk.get(a), BaseException)]
        if bad:
            out[name] = chunk[bad[0]]
            continue
        try:
            out[name] = reducer.partial(chunk)
        except NaNWeightError as err:
            out[name] = err
            if reread is not None:
                try:
                    reread()  # the reader's own check raises RunError naming the chunk file
                except RunError as named:
                    out[name] = named
        except Exception as err:  # noqa: BLE001 - kept for the caller
            out[name] = err
    return out


def _generic(run, reducers, names, errors, size) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        for chunk in iter_chunks(run, names, size):
            yield chunk.stop, _partials(reducers, chunk, errors)
    except Exception as err:  # noqa: BLE001 - a read error fails every reducer still collecting
        for name in reducers:
            errors.setdefault(name, err)


def _stored(run: Run, reducers, names, errors, workers) -> Iterator[tuple[int, dict[str, Any]]]:
    driver = "alpha" if "alpha" in names else max(names, key=lambda n: int(np.prod(run.arrays[n].shape[1:])))
    array = run.arrays[driver]
    spans = array.blocks()
    aligned = {name: run.arrays[name].blocks() == spans for name in names}
    lock = threading.Lock()
    local = threading.local()

    def read(name: str, number: int) -> np.ndarray:
        if name == driver:
            out = getattr(local, "out", None)
            if out is None:
                out = local.out = np.empty((array.chunk_tokens, *array.shape[1:]), dtype=array.dtype)
            return array.read_block(number, out=out, check=name != "alpha")
        if aligned[name]:
            return run.arrays[name].read_block(number)  # its own buffer: safe on any thread
        with lock:  # LazyArray.read keeps a one-chunk cache
            return run.arrays[name].read(*spans[number])

    def task(number: int) -> tuple[int, dict[str, Any]]:
        data: dict[str, Any] = {}
        for name in names:
            try:
                data[name] = read(name, number)
            except Exception as err:  # noqa: BLE001 - the reducers reading it fail with it
                data[name] = err
        chunk = Chunk(*spans[number], data)
        return spans[number][1], _partials(reducers, chunk, errors, lambda: array.read_block(number))

    if workers == 1 or len(spans) <= 1:
        for number in range(len(spans)):
            yield task(number)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="depthscope-scan") as pool:
        pending: deque = deque()
        try:
            for number in range(len(spans)):
                pending.append(pool.submit(task, number))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
                if len(errors) == len(reducers):
                    break
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
