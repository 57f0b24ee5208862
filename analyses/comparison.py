"""Confidence intervals and run-vs-run comparisons: bootstrap over documents, token blocks or tokens (scipy).

A statistic here is a function of additive per-group sums, so resampling groups is exact and cheap:
`grouped_sums(run)` streams over the run once and keeps, per group, the sums of every per-token quantity
per sublayer (routing statistics of `routing.py`, RMS of `signal.py` and `gradients.py`, loss) and their
counts; `statistics(sums)` names the scalar statistics computable from them (below).

Groups (`unit`): "documents" (the recorded document ids), "blocks" (consecutive runs of `block_tokens` = 256
tokens, a block bootstrap that keeps the dependence between neighbouring tokens), "tokens" (each token; at
most 200,000), or "auto" = documents when the run holds at least 20 documents, else blocks.

`estimate(sums, name)`: the statistic with a percentile bootstrap CI (scipy.stats.bootstrap's draws and
interval, resampling groups, `n_resamples` = 1000, 95 %, seed 0; the resampled sums are drawn once per
GroupedSums and shared by every statistic: bootstrap.py). `compare(a, b, name)`: the difference a - b with
its bootstrap CI (the two runs resampled independently) and Welch's t-test (scipy.stats.ttest_ind,
equal_var=False) on the statistic computed per group (groups where it is undefined are dropped), with its
p-value.

Statistic names (mean over sublayers = over the attention and MLP sublayers that have sources; _attn/_mlp
suffixes restrict to one kind):
  locality, long_range, embedding, entropy, norm_entropy, jump_rate, top_embedding_rate  (+ _attn, _mlp)
  locality_excess     locality minus its value under uniform weights (#nearest / #sources), averaged
  embedding_attn_minus_mlp, norm_entropy_mlp_minus_attn
  <stat>@<sublayer label>            one sublayer, e.g. locality@mlp3, input_rms@attn5
  <q>_last_first, <q>_log_slope, <q>_max_min, <q>_cv, <q>_early_late  for q in input_rms, output_rms,
                      residual_rms, grad_rms: growth / uniformity of the per-sublayer mean across depth
                      (definitions in signal.py and gradients.py); <q>_last_first3, <q>_log_slope3: the same
                      growth over sublayers 3..L (after the first transformer block)
  loss                mean per-token loss
The per-group sums are taken in one scan (scanner.py): the routing reducer with the tokens' groups
(routing_stats(run, k, groups=group_index(run, unit))) and GroupedRms for RMS and loss; analysis.py adds
them to its own scan of the run, so each array is read once.
Parameter-gradient norms are per step, not per token: `param_grad_sums(run)` groups them by step, with
param_grad_cv, param_grad_max_min, param_grad_early_late (and param_grad_rms_* per parameter).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .bootstrap import percentile_interval, resampled_sums
from .errors import AnalysisError
from .groups import BLOCK_TOKENS, MAX_TOKEN_GROUPS, MIN_DOCUMENTS, GroupIndex, group_index  # noqa: F401
from .routing import Routing, RoutingAccumulator
from .routing_groups import GROUP_FEATURES
from depthscope.models import sublayer_kinds

from .runs import as_run, run_name
from .scanner import Reducer, scan
from .sources import run_geometry

ROUTING_FEATURES = GROUP_FEATURES[:7]  # locality, long_range, embedding, entropy, norm_entropy, jump, top_embedding
RMS_FEATURES = ("input_rms", "output_rms", "residual_rms", "grad_rms")
N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass
class GroupedSums:
    """features [groups, F] of additive sums; names [F]; per-sublayer facts to build statistics from."""

    features: np.ndarray
    names: list[str]
    unit: str
    where: str
    sublayers: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    uniform_locality: np.ndarray | None = None  # [slots] #nearest / #sources
    routed: np.ndarray | None = None  # [slots] bool
    # bootstrap resampled sums, drawn once per (resamples, batch, seed[, other sample]): bootstrap.py
    resampled: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_groups(self) -> int:
        return self.features.shape[0]

    def col(self, name: str) -> int:
        return self.names.index(name)


def seed_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of a few independent values (e.g. one loss per training
    seed); low and high are NaN for fewer than two values."""
    from scipy import stats

    v = np.asarray(pd.Series(values, dtype=float).dropna())
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def _routing_matches(routing: Routing | None, run, unit: str, k: float | None, block_tokens: int,
                     chunk_tokens: int | None) -> bool:
    """Whether a routing_stats result holds the per-group sums grouped_sums would compute itself."""
    if routing is None or routing.group_sums is None or routing.groups is None:
        return False
    g = routing.groups
    return (unit in (g.asked, g.unit) and g.block_tokens == block_tokens and g.chunk_tokens == chunk_tokens
            and len(g.ids) == run.n_tokens and routing.k == (run_geometry(run).default_k() if k is None else k))


class GroupedRms(Reducer):
    """Scan reducer: per group (GroupIndex) sums and counts of the finite RMS quantities and the loss, [G, width]
    float64 with columns q@slot..., q_n@slot... per quantity, then loss, loss_n."""

    def __init__(self, run, index: GroupIndex):
        self.rms = [q for q in RMS_FEATURES if q in run.captured]
        self.has_loss = "loss" in run.captured
        self.arrays = tuple(self.rms) + (("loss",) if self.has_loss else ())
        self.index = index
        self.total = torch.zeros(index.n_groups, 2 * len(run.sublayer_labels) * len(self.rms) + 2 * self.has_loss,
                                 dtype=torch.float64)

    def partial(self, chunk) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.arrays:
            return None
        t = len(chunk)
        cols = []
        for q in self.rms:
            x = torch.as_tensor(np.asarray(chunk[q], dtype=np.float64))  # [T, slots]
            ok = torch.isfinite(x)
            cols += [torch.where(ok, x, 0.0), ok.double()]
        if self.has_loss:
            x = torch.as_tensor(np.asarray(chunk["loss"], dtype=np.float64)).view(t, 1)
            ok = torch.isfinite(x)
            cols += [torch.where(ok, x, 0.0), ok.double()]
        rows = torch.from_numpy(np.ascontiguousarray(self.index.of(chunk.start, chunk.stop)))
        return rows, torch.cat(cols, dim=1)  # [T], [T, width]

    def merge(self, part: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        if part is not None:
            self.total.index_add_(0, *part)  # summed into its groups' rows, in chunk order

    def result(self) -> np.ndarray:
        return self.total.numpy()


def grouped_sums(run, unit: str = "auto", k: float | None = None, block_tokens: int = BLOCK_TOKENS,
                 chunk_tokens: int | None = None, routing: Routing | None = None) -> GroupedSums:
    """Per group (groups.py), sums (and counts) of every per-token quantity per sublayer.

    The routing features are the per-group sums of the one-pass routing kernel (routing_groups.py): taken from
    `routing` when it is a routing_stats result of this run with the same k and groups
    (groups=group_index(run, unit, block_tokens, chunk_tokens)), else computed here in the same scan that
    sums RMS and loss (GroupedRms)."""
    run = as_run(run)
    if run.n_tokens == 0:
        raise AnalysisError(run_name(run), "the run holds no tokens")
    if _routing_matches(routing, run, unit, k, block_tokens, chunk_tokens):
        index = routing.groups
    else:
        routing = None
        index = group_index(run, unit, block_tokens, chunk_tokens)
    reducers: dict[str, Reducer] = {"rms": GroupedRms(run, index)}
    if routing is None and "alpha" in run.captured and run_geometry(run).routed.any():
        reducers["routing"] = RoutingAccumulator.of_run(run, k, index)
    results = scan(run, reducers, chunk_tokens)
    if "routing" in reducers:
        routing = results["routing"]
    return grouped_sums_of(run, index, routing, results["rms"])


def grouped_sums_of(run, index: GroupIndex, routing: Routing | None, rms: np.ndarray) -> GroupedSums:
    """GroupedSums from a scan's results: routing (routing_stats with these groups; None when the run has no
    routed sublayer) and rms (GroupedRms's result)."""
    G = index.n_groups
    labels = list(run.sublayer_labels)
    names = ["tokens"]
    parts = [np.bincount(index.ids, minlength=G).astype(np.float64)[:, None]]  # [G, 1]
    geo = None
    if "alpha" in run.captured:
        geo = run_geometry(run)
        for f in GROUP_FEATURES:  # the features listed, then norm_entropy_n
            names += [f"{f}@{lab}" for lab in labels]
        by_group = routing.group_sums if routing is not None else np.zeros((G, len(GROUP_FEATURES), len(labels)))
        parts.append(by_group.reshape(G, -1))  # [G, features, slots] -> [G, features * slots], feature-major
    for q in RMS_FEATURES:
        if q in run.captured:
            names += [f"{q}@{lab}" for lab in labels] + [f"{q}_n@{lab}" for lab in labels]
    if "loss" in run.captured:
        names += ["loss", "loss_n"]
    if rms.shape[1]:
        parts.append(rms)
    features = np.concatenate(parts, axis=1)
    sums = GroupedSums(features, names, index.unit, run_name(run), list(run.sublayers), labels, sublayer_kinds(labels))
    if geo is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            sums.uniform_locality = np.where(geo.routed, geo.nearest.sum(1) / np.maximum(geo.n_sources, 1), np.nan)
        sums.routed = geo.routed
    return sums


Stat = Callable[[np.ndarray], np.ndarray]


def _per_slot(sums: GroupedSums, feature: str, count: str | None) -> Callable[[np.ndarray], np.ndarray]:
    num = [sums.col(f"{feature}@{lab}") for lab in sums.labels]
    den = [sums.col(f"{count}@{lab}") for lab in sums.labels] if count else [sums.col("tokens")] * len(sums.labels)

    def f(x: np.ndarray) -> np.ndarray:  # [..., F] -> [..., slots]
        with np.errstate(invalid="ignore", divide="ignore"):
            return x[..., num] / x[..., den]

    return f


def _slope(xs: np.ndarray):
    xc = xs - xs.mean()
    denom = (xc**2).sum()

    def f(y: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            ly = np.log(y)
            return ((ly - ly.mean(-1, keepdims=True)) * xc).sum(-1) / denom

    return f


def statistics(sums: GroupedSums) -> dict[str, Stat]:
    """name -> function of summed features [..., F] (module docstring)."""
    out: dict[str, Stat] = {}
    kinds = np.asarray(sums.kinds)
    body = np.isin(kinds, ["attn", "mlp"])
    subl = np.asarray(sums.sublayers, dtype=float)
    if "loss" in sums.names:
        i, j = sums.col("loss"), sums.col("loss_n")
        out["loss"] = lambda x, i=i, j=j: x[..., i] / x[..., j]
    if sums.routed is not None:
        routed = sums.routed
        feats = {"locality": "locality", "long_range": "long_range", "embedding": "embedding", "entropy": "entropy",
                 "norm_entropy": "norm_entropy", "jump_rate": "jump", "top_embedding_rate": "top_embedding"}
        for name, feat in feats.items():
            per = _per_slot(sums, feat, "norm_entropy_n" if feat == "norm_entropy" else None)
            for lab_i, lab in enumerate(sums.labels):
                if routed[lab_i]:
                    out[f"{name}@{lab}"] = lambda x, per=per, i=lab_i: per(x)[..., i]
            for suffix, sel in (("", body), ("_attn", kinds == "attn"), ("_mlp", kinds == "mlp")):
                m = sel & routed
                if m.any():
                    out[name + suffix] = lambda x, per=per, m=m: np.nanmean(per(x)[..., m], axis=-1)
        loc = _per_slot(sums, "locality", None)
        m = body & routed
        uni = sums.uniform_locality
        out["locality_excess"] = lambda x: np.nanmean(loc(x)[..., m] - uni[m], axis=-1)
        if "embedding_attn" in out and "embedding_mlp" in out:
            ea, em = out["embedding_attn"], out["embedding_mlp"]
            out["embedding_attn_minus_mlp"] = lambda x: ea(x) - em(x)
        if "norm_entropy_attn" in out and "norm_entropy_mlp" in out:
            na, nm = out["norm_entropy_attn"], out["norm_entropy_mlp"]
            out["norm_entropy_mlp_minus_attn"] = lambda x: nm(x) - na(x)
    for q in RMS_FEATURES:
        if f"{q}_n@{sums.labels[0]}" not in sums.names:
            continue
        per = _per_slot(sums, q, f"{q}_n")
        for i, lab in enumerate(sums.labels):
            out[f"{q}@{lab}"] = lambda x, per=per, i=i: per(x)[..., i]
        m = body.copy()
        idx = np.nonzero(m)[0]
        slope = _slope(subl[idx])
        edge = max(1, len(idx) // 4)

        def pick(x, per=per, idx=idx):
            return per(x)[..., idx]

        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{q}_last_first"] = lambda x, pick=pick: pick(x)[..., -1] / pick(x)[..., 0]
            out[f"{q}_log_slope"] = lambda x, pick=pick, slope=slope: slope(pick(x))
            out[f"{q}_max_min"] = lambda x, pick=pick: pick(x).max(-1) / pick(x).min(-1)
            out[f"{q}_cv"] = lambda x, pick=pick: pick(x).std(-1) / pick(x).mean(-1)
            out[f"{q}_early_late"] = lambda x, pick=pick, e=edge: pick(x)[..., :e].mean(-1) / pick(x)[..., -e:].mean(-1)
        # the same growth after the first transformer block (sublayers 3..L): sublayer 1 reads the raw embedding,
        # whose small initial scale can dominate last/first on its own
        late = idx[subl[idx] >= 3]
        if len(late) >= 2:
            slope3 = _slope(subl[late])

            def pick3(x, per=per, late=late):
                return per(x)[..., late]

            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{q}_last_first3"] = lambda x, pick=pick3: pick(x)[..., -1] / pick(x)[..., 0]
                out[f"{q}_log_slope3"] = lambda x, pick=pick3, slope=slope3: slope(pick(x))
    return out


def param_grad_sums(run) -> GroupedSums:
    """Per-step parameter-gradient norms as groups (one group per recorded step)."""
    from .gradients import param_grad_matrix

    run = as_run(run)
    norm = param_grad_matrix(run)
    per_param = param_grad_matrix(run, per_parameter=True)
    labels = dict(zip(run.sublayers, run.sublayer_labels))
    subs = list(norm.columns)
    names = [f"param_grad_norm@{labels.get(s, s)}" for s in subs] + [f"param_grad_rms@{labels.get(s, s)}" for s in subs]
    features = np.concatenate([norm.to_numpy(), per_param.to_numpy()], axis=1)
    return GroupedSums(features, names, "steps", run_name(run), subs, [labels.get(s, str(s)) for s in subs],
                       sublayer_kinds([labels.get(s, str(s)) for s in subs]))


def param_grad_statistics(sums: GroupedSums) -> dict[str, Stat]:
    out: dict[str, Stat] = {}
    n = len(sums.labels)
    edge = max(1, n // 4)
    for q, offset in (("param_grad", 0), ("param_grad_rms", n)):
        cols = list(range(offset, offset + n))

        def pick(x, cols=cols):
            return x[..., cols]

        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{q}_cv"] = lambda x, pick=pick: np.nanstd(pick(x), -1) / np.nanmean(pick(x), -1)
            out[f"{q}_max_min"] = lambda x, pick=pick: np.nanmax(pick(x), -1) / np.nanmin(pick(x), -1)
            out[f"{q}_early_late"] = lambda x, pick=pick, e=edge: np.nanmean(pick(x)[..., :e], -1) / np.nanmean(pick(x)[..., -e:], -1)
    return out


def _stat(sums: GroupedSums, name: str, table: dict[str, Stat] | None) -> Stat:
    table = table if table is not None else (param_grad_statistics(sums) if sums.unit == "steps" else statistics(sums))
    if name not in table:
        raise AnalysisError(sums.where, f"statistic {name!r} is not available for this run "
                                        f"(available: {', '.join(sorted(table)[:40])}{' ...' if len(table) > 40 else ''})")
    return table[name]


def _batch(sums: GroupedSums) -> int:
    """The resamples per batch the draws are made in (scipy's `batch`; it fixes the draws of two samples)."""
    return max(1, int(2e7 // max(1, sums.n_groups * sums.features.shape[1])))


def _resampled(a: GroupedSums, b: GroupedSums | None, n_resamples: int, seed: int) -> list[np.ndarray]:
    """The bootstrap resampled sums [n_resamples, F] of a (and of b, drawn together as scipy draws two
    independent samples), cached on `a` (bootstrap.py)."""
    batch = _batch(a) if b is None else max(1, min(_batch(a), _batch(b)))
    key = (n_resamples, batch, seed, None if b is None else id(b.features))
    have = a.resampled.get(key)
    # the cached entry holds the features it was drawn from (so an id is never reused while it is cached)
    if have is None or have[0] is not a.features or (b is not None and have[1] is not b.features):
        features = [a.features] if b is None else [a.features, b.features]
        have = (a.features, None if b is None else b.features, resampled_sums(features, n_resamples, batch, seed))
        a.resampled[key] = have
    return have[2]


def _quiet(f: Stat, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return f(x)


def estimate(sums: GroupedSums, name: str, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
             seed: int = 0, table: dict[str, Stat] | None = None) -> dict:
    """name, value, ci_low, ci_high, n_groups, unit: the statistic and its percentile bootstrap CI.

    value = f(sums over all groups); the CI is the percentile interval of f over `n_resamples` resamples of
    the groups with replacement (seed `seed`; the same draws for every statistic of `sums`)."""
    f = _stat(sums, name, table)
    x = sums.features
    value = float(_quiet(f, x.sum(0)))
    low = high = np.nan
    if sums.n_groups >= 2 and np.isfinite(value):
        (resampled,) = _resampled(sums, None, n_resamples, seed)
        low, high = percentile_interval(_quiet(f, resampled), sums.n_groups, confidence)
    return {"statistic": name, "value": value, "ci_low": low, "ci_high": high, "n_groups": sums.n_groups,
            "unit": sums.unit}


def compare(a: GroupedSums, b: GroupedSums, name: str, n_resamples: int = N_RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """The difference a - b of a statistic: value_a, value_b, diff, bootstrap CI (percentile; the two runs'
    groups resampled independently), Welch t and p-value (on the statistic computed per group)."""
    from scipy.stats import ttest_ind

    fa, fb = _stat(a, name, None), _stat(b, name, None)
    xa, xb = a.features, b.features
    va, vb = float(_quiet(fa, xa.sum(0))), float(_quiet(fb, xb.sum(0)))
    low = high = np.nan
    if a.n_groups >= 2 and b.n_groups >= 2 and np.isfinite(va - vb):
        ra, rb = _resampled(a, b, n_resamples, seed)
        low, high = percentile_interval(_quiet(fa, ra) - _quiet(fb, rb), a.n_groups, confidence)
    ga, gb = np.asarray(_quiet(fa, xa), dtype=float), np.asarray(_quiet(fb, xb), dtype=float)
    ga, gb = ga[np.isfinite(ga)], gb[np.isfinite(gb)]
    t = p = np.nan
    if len(ga) >= 2 and len(gb) >= 2 and (ga.std() > 0 or gb.std() > 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            test = ttest_ind(ga, gb, equal_var=False)
        t, p = float(test.statistic), float(test.pvalue)
    return {"statistic": name, "value_a": va, "value_b": vb, "diff": va - vb, "ci_low": low, "ci_high": high,
            "welch_t": t, "p_value": p, "n_groups_a": a.n_groups, "n_groups_b": b.n_groups, "unit_a": a.unit,
            "unit_b": b.unit}


def compare_table(a: GroupedSums, b: GroupedSums, names=None, **kw) -> pd.DataFrame:
    """compare() for every statistic both runs have (or the given names)."""
    table_a = param_grad_statistics(a) if a.unit == "steps" else statistics(a)
    table_b = param_grad_statistics(b) if b.unit == "steps" else statistics(b)
    names = [n for n in table_a if n in table_b] if names is None else list(names)
    return pd.DataFrame([compare(a, b, n, **kw) for n in names])
