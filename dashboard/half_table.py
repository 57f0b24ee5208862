"""Tables over every 16-bit float, so that a chunk of stored float16 weights is binned and ranked by one
table look-up per weight instead of a float conversion and arithmetic.

A float16 has only 65,536 bit patterns: the histogram bin of each one is computed once (with cell_index's own
`bin_of`, so build and queries round alike), NaN patterns mapping to an extra bin that flags a fault. For
ranking, `order_key` maps the bits to uint16 whose integer order is the float order.
"""
from __future__ import annotations

import numpy as np
import torch

from .cell_index import CELL_BINS, bin_of

TORCH_GRAIN = 32768  # elements at or below which torch runs an elementwise kernel on the calling thread
NAN_BIN = CELL_BINS  # the extra bin of NaN patterns (a valid weight must never land there)
HALF_VALUES = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)  # [65536]


def bin_table(lo: float, hi: float) -> np.ndarray:
    """[65536] uint16: the histogram bin of each float16 bit pattern (NAN_BIN for NaN)."""
    with np.errstate(invalid="ignore"):
        table = bin_of(HALF_VALUES, lo, hi).astype(np.uint16)
    table[np.isnan(HALF_VALUES)] = NAN_BIN
    return table


def bin_floors(table: np.ndarray) -> np.ndarray:
    """[CELL_BINS] float32: the smallest float16 value whose bin (by `table`) is at least each bin, so that
    every weight in bin t or above is >= floor[t] (bins only grow with the value)."""
    finite = np.isfinite(HALF_VALUES)
    values, bins = HALF_VALUES[finite], table[finite]
    return np.array([values[bins >= t].min() if (bins >= t).any() else np.inf for t in range(CELL_BINS)],
                    dtype=np.float32)


def order_key(bits: np.ndarray) -> np.ndarray:
    """uint16 keys of float16 bit patterns (not NaN) whose integer order is the float order; -0 and +0 equal.

    Non-negative floats already order as their bits; a negative one orders as its complemented bits."""
    if not (bits >= 0x8000).any():
        return bits
    key = bits ^ np.where(bits >= 0x8000, np.uint16(0xFFFF), np.uint16(0x8000))
    key[bits == 0x8000] = 0x8000  # -0 ties with +0, as the floats do
    return key


def half_to_float32(half: np.ndarray) -> np.ndarray:
    """float32 copy of a float16 array [rows, cols] (exact). numpy converts one element at a time (~2 ns
    each); torch's vectorised kernel is about five times quicker. Row blocks of at most TORCH_GRAIN elements
    keep torch on this (worker) thread instead of its shared intra-op pool."""
    out = np.empty(half.shape, dtype=np.float32)
    src, dst = torch.from_numpy(np.ascontiguousarray(half)), torch.from_numpy(out)
    step = max(1, TORCH_GRAIN // max(1, half.shape[1]))
    for a in range(0, len(half), step):
        dst[a: a + step].copy_(src[a: a + step])
    return out
