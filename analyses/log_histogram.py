"""Moments and percentiles of positive per-token quantities (RMS of hidden states, of gradients), per slot, from
one scan: the one definition of a percentile from a log histogram, shared by signal.py and the dashboard.

Per slot: count, sum, sum of squares and sum of natural logs of the finite positive values, and a histogram of
log10 over a range (`LogBins`; by default SIGNAL_BINS, 1e-8 .. 1e8) in 100 bins per decade (0.01 dex:
percentiles within about 2.3 %); values outside the range land in the first or last bin. A value's bin is
floor((log10 x - lo) / (hi - lo) * bins) in float32. A percentile interpolates linearly in log10 within the
bin where the cumulative count reaches q % of the count. Shapes: x [tokens, slots]; hist [slots, bins].

The dashboard bins over 1e-6 .. 1e6 (DASHBOARD_BINS): the same edges (both ranges are whole decades at 100
bins per decade), but a value within a float32 rounding of an edge can land on the other side of it in the
two ranges, which moves a percentile by up to a bin's share, so each keeps the range its figures and tables
were made with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scanner import Reducer

BINS_PER_DECADE = 100


@dataclass(frozen=True)
class LogBins:
    """log10 bins over [lo, hi] (whole decades), BINS_PER_DECADE per decade."""

    lo: float
    hi: float

    @property
    def bins(self) -> int:
        return int(round((self.hi - self.lo) * BINS_PER_DECADE))

    def of(self, lg: np.ndarray) -> np.ndarray:
        """Bins (int64, clipped to the range) of float32 log10 values lg (overwritten)."""
        lg -= np.float32(self.lo)  # in place, float32 throughout
        lg /= np.float32(self.hi - self.lo)
        lg *= np.float32(self.bins)
        b = np.floor(lg).astype(np.int64)
        return np.clip(b, 0, self.bins - 1, out=b)

    def value(self, position: float) -> float:
        """The value at a (fractional) bin position."""
        return 10 ** (self.lo + position / BINS_PER_DECADE)


SIGNAL_BINS = LogBins(-8.0, 8.0)
DASHBOARD_BINS = LogBins(-6.0, 6.0)


@dataclass
class Moments:
    """Sums over tokens per slot (float64 [slots]) and the log10 histogram [slots, bins] int64."""

    count: np.ndarray
    sum: np.ndarray
    sq: np.ndarray
    log: np.ndarray
    hist: np.ndarray
    scale: LogBins = SIGNAL_BINS

    @classmethod
    def zeros(cls, n: int, scale: LogBins = SIGNAL_BINS) -> "Moments":
        return cls(*(np.zeros(n) for _ in range(4)), np.zeros((n, scale.bins), dtype=np.int64), scale)

    @classmethod
    def of(cls, x: np.ndarray, scale: LogBins = SIGNAL_BINS) -> "Moments":
        """The moments of x [tokens, slots]; NaN, infinite and non-positive values are skipped."""
        x = np.asarray(x, dtype=np.float32)
        m, n = x.shape
        ok = np.isfinite(x) & (x > 0)
        every = bool(ok.all())  # the usual case: no masking copies
        kept = x if every else np.where(ok, x, np.float32(0))
        x64 = kept.astype(np.float64)
        lg = np.log10(x if every else np.where(ok, x, np.float32(1)))  # float32
        log = lg.sum(0, dtype=np.float64) * np.log(10.0)
        bins = scale.bins
        b = scale.of(lg)
        b += (np.arange(n) * bins)[None, :]  # [m, slots]: slot * bins + bin
        hist = np.bincount(b.ravel() if every else b[ok], minlength=n * bins).reshape(n, bins)
        count = np.full(n, float(m)) if every else ok.sum(0).astype(np.float64)
        return cls(count, x64.sum(0), np.einsum("ij,ij->j", x64, x64), log, hist, scale)

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
        return percentile(self.hist, q, self.scale)


def percentile(hist: np.ndarray, q: float, scale: LogBins = SIGNAL_BINS) -> np.ndarray:
    """[slots] the q-th percentile of log10 histograms hist [slots, bins] (module docstring)."""
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
        out[i] = scale.value(b + min(max(frac, 0.0), 1.0))
    return out


class MomentsReducer(Reducer):
    """Scan reducer: the Moments of one [tokens, slots] array of a run."""

    def __init__(self, name: str, slots: int, scale: LogBins = SIGNAL_BINS):
        self.arrays = (name,)
        self.scale = scale
        self.total = Moments.zeros(slots, scale)

    def partial(self, chunk) -> Moments:
        return Moments.of(chunk[self.arrays[0]], self.scale)

    def merge(self, part: Moments) -> None:
        self.total.add(part)

    def result(self) -> Moments:
        return self.total
