"""Moments and percentiles of positive per-token quantities (RMS of hidden states, of gradients), per slot, from
one scan: the one definition of a percentile from a log histogram, shared by signal.py and the dashboard.

Per slot: count, sum, sum of squares and sum of natural logs of the finite positive values, and a histogram of
log10 over LOG10_LOW .. LOG10_HIGH in BINS_PER_DECADE bins per decade (0.01 dex: percentiles within about
2.3 %); values outside the range land in the first or last bin. A percentile interpolates linearly in log10
within the bin where the cumulative count reaches q % of the count. Shapes: x [tokens, slots]; hist
[slots, BINS].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scan import Reducer

LOG10_LOW, LOG10_HIGH, BINS_PER_DECADE = -8.0, 8.0, 100
BINS = int((LOG10_HIGH - LOG10_LOW) * BINS_PER_DECADE)


@dataclass
class Moments:
    """Sums over tokens per slot (float64 [slots]) and the log10 histogram [slots, BINS] int64."""

    count: np.ndarray
    sum: np.ndarray
    sq: np.ndarray
    log: np.ndarray
    hist: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> "Moments":
        return cls(*(np.zeros(n) for _ in range(4)), np.zeros((n, BINS), dtype=np.int64))

    @classmethod
    def of(cls, x: np.ndarray) -> "Moments":
        """The moments of x [tokens, slots]; NaN, infinite and non-positive values are skipped."""
        x = np.asarray(x, dtype=np.float32)
        m, n = x.shape
        ok = np.isfinite(x) & (x > 0)
        every = bool(ok.all())  # the usual case: no masking copies
        kept = x if every else np.where(ok, x, np.float32(0))
        x64 = kept.astype(np.float64)
        lg = np.log10(x if every else np.where(ok, x, np.float32(1)))  # float32
        log = lg.sum(0, dtype=np.float64) * np.log(10.0)
        lg -= np.float32(LOG10_LOW)  # in place: the same float32 operations as floor((lg - LOW) * BINS_PER_DECADE)
        lg *= np.float32(BINS_PER_DECADE)
        b = np.floor(lg).astype(np.int64)
        np.clip(b, 0, BINS - 1, out=b)
        b += (np.arange(n) * BINS)[None, :]  # [m, slots]: slot * BINS + bin
        hist = np.bincount(b.ravel() if every else b[ok], minlength=n * BINS).reshape(n, BINS)
        count = np.full(n, float(m)) if every else ok.sum(0).astype(np.float64)
        return cls(count, x64.sum(0), np.einsum("ij,ij->j", x64, x64), log, hist)

    def add(self, other: "Moments") -> None:
        for name in ("count", "sum", "sq", "log", "hist"):
            getattr(self, name).__iadd__(getattr(other, name))

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.count

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.maximum(self.sq / self.count - self.mean**2, 0.0))

    @property
    def geo_mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.exp(self.log / self.count)

    def percentile(self, q: float) -> np.ndarray:
        """[slots] the q-th percentile (NaN where a slot holds no value)."""
        return percentile(self.hist, q)


def percentile(hist: np.ndarray, q: float) -> np.ndarray:
    """[slots] the q-th percentile of log10 histograms hist [slots, BINS] (module docstring)."""
    cum = np.cumsum(hist, axis=1)
    out = np.full(len(hist), np.nan)
    for i in range(len(hist)):
        total = cum[i, -1]
        if total <= 0:
            continue
        target = q / 100.0 * total
        b = int(np.searchsorted(cum[i], target, side="left"))
        below = cum[i, b - 1] if b > 0 else 0.0
        frac = (target - below) / max(hist[i, b], 1e-300)
        out[i] = 10 ** (LOG10_LOW + (b + min(max(frac, 0.0), 1.0)) / BINS_PER_DECADE)
    return out


class MomentsReducer(Reducer):
    """Scan reducer: the Moments of one [tokens, slots] array of a run."""

    def __init__(self, name: str, slots: int):
        self.arrays = (name,)
        self.total = Moments.zeros(slots)

    def partial(self, chunk) -> Moments:
        return Moments.of(chunk[self.arrays[0]])

    def merge(self, part: Moments) -> None:
        self.total.add(part)

    def result(self) -> Moments:
        return self.total
