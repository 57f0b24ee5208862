"""A small LRU of decoded depth-attention chunks, so that the callbacks of one view (the heatmap and the
clicked cell share a filter, hence the same edge chunks) decode a stored chunk once, not once per callback.

Shapes: a cached chunk is alpha [tokens, slots, sources] as stored (float16, NaN beyond each row's sources);
`cells()` returns [tokens, slots * sources] float32 with the invalid cells set to 0.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

CACHE_BYTES = 96 * 2**20  # a few chunks of a 32-sublayer Full AttnRes run (~18 MB each)


class ChunkCache:
    """Decoded chunks [starts[i], stops[i]) of `array` (a probe LazyArray), least recently used dropped first."""

    def __init__(self, array, starts: list[int], stops: list[int], valid: np.ndarray, budget: int = CACHE_BYTES):
        self.array = array
        self.starts = np.asarray(starts, dtype=np.int64)
        self.stops = np.asarray(stops, dtype=np.int64)
        self.invalid = ~valid.reshape(-1)  # [cells]
        self.budget = budget
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0  # chunks decoded (tests and the benchmark look at it)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()

    def chunk_of(self, token: int) -> int:
        return int(np.searchsorted(self.starts, token, side="right")) - 1

    def block(self, i: int) -> np.ndarray:
        """alpha of chunk i, [tokens, slots, sources] (read-only view of the cached copy)."""
        with self._lock:
            hit = self._blocks.get(i)
            if hit is not None:
                self._blocks.move_to_end(i)
                return hit
        block = self.array.read(int(self.starts[i]), int(self.stops[i]))
        block.flags.writeable = False
        with self._lock:
            self.reads += 1
            self._blocks[i] = block
            used = sum(b.nbytes for b in self._blocks.values())
            while used > self.budget and len(self._blocks) > 1:
                _, old = self._blocks.popitem(last=False)
                used -= old.nbytes
        return block

    def _parts(self, start: int, stop: int):
        """Each stored chunk's share of tokens [start, stop), as [tokens, slots * sources] (read whole chunks)."""
        i = self.chunk_of(start)
        while i < len(self.starts) and self.starts[i] < stop:
            a = int(self.starts[i])
            part = self.block(i)[max(start - a, 0): min(stop, int(self.stops[i])) - a]
            yield part.reshape(len(part), -1)
            i += 1

    def cells(self, start: int, stop: int) -> np.ndarray:
        """alpha of tokens [start, stop) as [tokens, cells] float32, invalid cells 0 (reads whole chunks)."""
        parts = list(self._parts(start, stop))
        if not parts:
            return np.zeros((0, self.invalid.size), dtype=np.float32)
        out = np.concatenate(parts).astype(np.float32) if len(parts) > 1 else parts[0].astype(np.float32)
        out[:, self.invalid] = 0.0
        return out

    def column(self, start: int, stop: int, c: int) -> np.ndarray:
        """alpha of tokens [start, stop) at flattened cell c, float32 (invalid cells 0)."""
        parts = [part[:, c] for part in self._parts(start, stop)]
        out = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if self.invalid[c]:
            out[:] = 0.0
        return out
