"""Group bootstrap of statistics of summed features, drawn once and shared by every statistic.

A statistic of comparison.py is f(sum of the chosen groups' feature rows). A bootstrap resample that draws group
i c_i times has the sums  c @ features  ([groups] @ [groups, F] -> [F]), so the resampled sums of all
`n_resamples` draws are one matrix product  C @ features  with C [n_resamples, groups] the draw counts, and
every statistic of the same groups, seed and resample count reads the same [n_resamples, F] matrix.

The draws are scipy.stats.bootstrap's own (paired=False): in batches of `batch` resamples, for each sample
in turn, `rng.integers(0, n, (batch, n))` from `np.random.default_rng(seed)`; and the interval is scipy's
percentile interval of the resulting bootstrap distribution (`bootstrap(..., bootstrap_result=...)` with no
new resamples). So the estimates equal those of calling scipy.stats.bootstrap on each statistic with a
lambda over resampled groups, up to float rounding of the sums (they are summed in another order).
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Sequence

import numpy as np


def draw_counts(sizes: Sequence[int], n_resamples: int, batch: int, seed: int) -> list[np.ndarray]:
    """Per sample of `sizes` groups, the draw counts [n_resamples, n] of scipy.stats.bootstrap's resamples
    (module docstring): entry [r, i] is how often resample r drew group i."""
    rng = np.random.default_rng(seed)
    counts = [np.empty((n_resamples, n)) for n in sizes]
    for k in range(0, n_resamples, batch):
        b = min(batch, n_resamples - k)
        for out, n in zip(counts, sizes):
            drawn = rng.integers(0, n, size=(b, n), dtype=np.int64)  # [b, n] group of each draw
            flat = (drawn + n * np.arange(b)[:, None]).ravel()  # resample r's draws land in row r
            out[k:k + b] = np.bincount(flat, minlength=b * n).reshape(b, n)
    return counts


def resampled_sums(features: Sequence[np.ndarray], n_resamples: int, batch: int, seed: int) -> list[np.ndarray]:
    """Per sample (features [groups, F]), the summed features of each bootstrap resample [n_resamples, F]."""
    counts = draw_counts([len(x) for x in features], n_resamples, batch, seed)
    return [c @ x for c, x in zip(counts, features)]


def percentile_interval(distribution: np.ndarray, n_groups: int, confidence: float) -> tuple[float, float]:
    """scipy.stats.bootstrap's percentile interval of a bootstrap distribution [n_resamples] (NaN when the
    distribution holds NaN)."""
    from scipy.stats import bootstrap

    done = SimpleNamespace(bootstrap_distribution=np.asarray(distribution, dtype=float))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap((np.arange(max(n_groups, 2)),), _unused, n_resamples=0, bootstrap_result=done,
                        confidence_level=confidence, method="percentile", vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _unused(*args, axis: int = -1):  # the statistic is never called: no new resamples, percentile method
    raise AssertionError("bootstrap drew new resamples")

