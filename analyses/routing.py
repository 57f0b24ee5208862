"""Routing statistics per sublayer (split pre-attention / pre-MLP / final), streamed over a run's chunks.

Definitions (geometry and distances: `depthscope.analyses.sources`). For a token t and a sublayer l with valid
sources s (alpha NaN beyond them), the **shares** are p_s = |alpha_s| / sum_s' |alpha_s'|. For softmax mixers
(Full / Block AttnRes) p = alpha; the residual's unit weights become the uniform share 1/(#sources); signed
weights (DenseFormer, Hyper-Connections) are compared by magnitude. Per (token, sublayer):

  locality         sum of p over the nearest source(s): the immediate predecessor (Full AttnRes, residual),
                   the partial sum (Block AttnRes; the previous block at a block's first sublayer), the
                   latest block output (DenseFormer). The embedding counts where it is the nearest source
                   (sublayer 1, the first sublayer of block 1).
  long_range       sum of p over NON-EMBEDDING sources more than k back (k in the run's unit: sublayers, or
                   blocks for Block AttnRes; default 4 sublayers / 2 blocks). The embedding is reported
                   separately as `embedding`.
  embedding        p of the embedding (reach-back to the input).
  entropy          H = -sum p log p (nats); norm_entropy = H / log(#valid sources) (NaN with one source);
                   eff_sources = exp(H).
  top source       argmax_s p (ties: the most recent source when it is among the maxima, else the oldest).
  jump             the top source is a non-embedding source more than k back; top_embedding: the top source
                   is the embedding (reported apart from jumps).

Per sublayer, over tokens: the means of the above; jump_rate, top_embedding_rate; the jump-distance
distribution (how many tokens had their top source at each distance; `is_jump` marks distance > k);
`usual_source` (the most frequent top source) and off_usual_rate (share of tokens whose top source differs);
`spread` = sqrt(mean over valid sources of the variance across tokens of p_s) (per-token variability).
Per (sublayer, source): mean_alpha (raw weight), mean_share, std_share (across tokens), top_rate, and
**depth sinks**: sources whose mean share is at least `sink_lift` (default 2) times the uniform share
1/(#sources) and at least `sink_min_mean` (default 0.1), with coefficient of variation std/mean across
tokens at most `sink_max_cv` (default 0.5): high weight regardless of the input.

Hyper-Connection runs have no source distances: locality, long_range, jumps are NaN there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import AnalysisError
from .groups import GroupIndex
from .routing_chunk import STAT_COLUMNS, ChunkKernel, RoutingSums
from .routing_groups import GROUP_FEATURES
from .runs import as_run, model_kind, require, run_name
from .sources import SourceGeometry, run_geometry
from .stream import map_chunks

# Mixers whose recorded weights are non-negative (softmax, or the residual's ones): no |.| needed.
NONNEGATIVE_KINDS = ("full_attnres", "block_attnres", "residual")
SINK_MIN_MEAN = 0.1
SINK_LIFT = 2.0
SINK_MAX_CV = 0.5


def _gather_plan(mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat column indices [n * w] and 0/1 weights [n, w] picking the True entries of mask [n, S] per row."""
    n, s = mask.shape
    width = max(int(mask.sum(1).max()), 1)
    index = np.zeros((n, width), dtype=np.int64)
    weight = np.zeros((n, width), dtype=np.float32)
    for i in range(n):
        cols = np.nonzero(mask[i])[0]
        index[i, : len(cols)] = i * s + cols
        weight[i, : len(cols)] = 1.0
    return torch.from_numpy(index.ravel()), torch.from_numpy(weight)


class RoutingKernel:
    """Per-token routing statistics of one chunk; holds the geometry as torch index plans (reused across chunks).

    Works on the unnormalised magnitudes a = |alpha| (zero beyond the valid sources) to save passes over the
    chunk: with Z = sum_s a_s, every share-linear statistic is (a . mask) / Z, and H = log Z - (sum a log a) / Z.
    Masks that pick few sources (nearest, embedding, the sources within k) are gathered, not multiplied:
    long_range = (Z - embedding - sources within k) / Z.
    """

    def __init__(self, geo: SourceGeometry, k: float | None = None, signed: bool = True, where: str = "<run>"):
        self.geo = geo
        self.k = geo.default_k() if k is None else k
        self.signed = signed
        self.where = where
        self.invalid = torch.from_numpy(~geo.valid)  # [n, S]
        self.plans = {
            "nearest": _gather_plan(geo.nearest),
            "embedding": _gather_plan(geo.is_embedding),
            "short": _gather_plan(geo.valid & ~geo.is_embedding & ~geo.long_range(self.k)),
        }
        counts = geo.n_sources.astype(np.float64)
        with np.errstate(divide="ignore"):
            self.log_n = torch.from_numpy(np.where(counts > 1, np.log(np.maximum(counts, 1)), np.nan).astype(np.float32))
        self.distance = torch.from_numpy(np.nan_to_num(geo.distance, nan=-1.0).astype(np.float32))  # [n, S]
        self.is_emb = torch.from_numpy(geo.is_embedding)
        self.routed = torch.from_numpy(geo.routed)
        self.last = torch.from_numpy(np.maximum(geo.n_sources - 1, 0))  # [n] index of the most recent source
        self.last_flat = torch.arange(geo.valid.shape[0]) * geo.valid.shape[1] + self.last
        self.has_distance = geo.has_distance
        self._scratch: torch.Tensor | None = None

    def scratch(self, like: torch.Tensor) -> torch.Tensor:
        if self._scratch is None or self._scratch.shape != like.shape:
            self._scratch = torch.empty_like(like)
        return self._scratch

    def prepare(self, alpha) -> torch.Tensor:
        """alpha [T, n, S] (numpy or torch, any float dtype) -> a = |alpha| float32, zero beyond valid sources."""
        a = torch.as_tensor(alpha)
        if a.dim() != 3 or tuple(a.shape[1:]) != tuple(self.invalid.shape):
            raise AnalysisError(self.where, f"alpha chunk of shape {tuple(a.shape)}, expected [tokens, "
                                            f"{self.invalid.shape[0]}, {self.invalid.shape[1]}]")
        a = a.to(torch.float32) if a.dtype != torch.float32 else a.clone()
        a.masked_fill_(self.invalid, 0.0)
        if self.signed:
            a.abs_()
        return a

    def _pick(self, flat: torch.Tensor, name: str) -> torch.Tensor:
        index, weight = self.plans[name]
        t = flat.shape[0]
        return (flat.index_select(1, index).view(t, *weight.shape) * weight).sum(-1)  # [T, n]

    def token_stats(self, a: torch.Tensor, start: int = 0) -> dict[str, torch.Tensor]:
        """a [T, n, S] from prepare() -> per-token statistics, each [T, n] (module docstring), plus
        "total" = Z = sum_s |alpha_s| (shares are a / Z)."""
        t, n, s = a.shape
        total = a.sum(-1)  # [T, n]
        if torch.isnan(total).any():
            ti, i = (int(x) for x in torch.nonzero(torch.isnan(total))[0])
            raise AnalysisError(self.where, f"NaN depth-attention weight for a valid source (token {start + ti}, "
                                            f"sublayer {self.geo.sublayer_labels[i]})")
        bad = (total <= 0) & self.routed
        if bad.any():
            ti, i = (int(x) for x in torch.nonzero(bad)[0])
            raise AnalysisError(self.where, f"all-zero depth-attention weights (token {start + ti}, sublayer "
                                            f"{self.geo.sublayer_labels[i]}): shares are undefined")
        inv = 1.0 / total.clamp_min(1e-30)
        flat = a.view(t, n * s)
        emb = self._pick(flat, "embedding")
        # sum_s a log a, via a scratch buffer (xlogy allocates and is several times slower)
        buf = self.scratch(a)
        torch.clamp(a, min=1e-30, out=buf)
        buf.log_().mul_(a)
        ent = (torch.log(total.clamp_min(1e-30)) - buf.sum(-1) * inv).clamp_min(0.0)
        top = a.argmax(-1)  # [T, n]; ties -> the oldest source, unless the most recent one is among the maxima
        rows = torch.arange(n).unsqueeze(0)
        last = self.last.unsqueeze(0).expand(t, n)
        top_val = a.gather(-1, top.unsqueeze(-1)).squeeze(-1)
        last_val = flat.index_select(1, self.last_flat)  # [T, n]
        top = torch.where(last_val >= top_val, last, top)
        top_dist = self.distance[rows, top]  # [T, n]
        top_emb = self.is_emb[rows, top]
        nan = torch.full_like(ent, float("nan"))
        dist = self.has_distance
        if dist:
            locality = self._pick(flat, "nearest") * inv
            long_range = ((total - emb - self._pick(flat, "short")) * inv).clamp_min(0.0)
        return {
            "locality": locality if dist else nan,
            "long_range": long_range if dist else nan,
            "embedding": emb * inv,
            "entropy": ent,
            "norm_entropy": ent / self.log_n,
            "eff_sources": torch.exp(ent),
            "top": top,
            "top_distance": torch.where(top_emb, nan, top_dist) if dist else nan,
            "top_embedding": top_emb,
            "jump": (~top_emb) & (top_dist > self.k) if dist else torch.zeros_like(top_emb),
            "total": total,
        }


@dataclass
class Routing:
    """Tables of routing statistics (module docstring): `sublayers` (one row per sublayer), `sources` (one row
    per sublayer and source), `jumps` (per sublayer and distance of the top source), `by_kind` (means over the
    sublayers of each kind: attn, mlp, final, all = attn and mlp). k: the window used; unit: its unit.
    mean_alpha [n, S]: token-mean of the recorded (signed) weights, NaN beyond each row's sources (what
    mixing.mixing_from_run needs). groups / group_sums: when routing_stats was given a GroupIndex, its
    numbering and the per-group sums [n_groups, len(GROUP_FEATURES), n] of routing_groups.py (what
    compare.grouped_sums needs)."""

    sublayers: pd.DataFrame
    sources: pd.DataFrame
    jumps: pd.DataFrame
    by_kind: pd.DataFrame
    k: float
    unit: str
    tokens: int
    mean_alpha: np.ndarray | None = None
    groups: GroupIndex | None = None
    group_sums: np.ndarray | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"routing": self.sublayers, "routing_sources": self.sources, "routing_jumps": self.jumps,
                "routing_by_kind": self.by_kind}


class RoutingAccumulator:
    """Streaming sums behind `Routing`: update(alpha chunk) (or add(kernel.sums(chunk)), e.g. from worker
    threads) any number of times, then result(). The sums come from the one-pass chunk kernel
    (routing_chunk.py), which computes the same statistics as RoutingKernel without per-token tables.
    groups: when given, the chunk sums carry per-group sums (kernel.sums(..., groups=...)), gathered here."""

    def __init__(self, geo: SourceGeometry, k: float | None = None, signed: bool = True, where: str = "<run>",
                 groups: GroupIndex | None = None):
        self.kernel = ChunkKernel(geo, k, signed, where)
        self.total = RoutingSums.zeros(*geo.valid.shape)
        self.groups = groups
        self.group_sums = (np.zeros((groups.n_groups, len(GROUP_FEATURES), geo.valid.shape[0]))
                           if groups is not None else None)

    @property
    def tokens(self) -> int:
        return self.total.tokens

    def update(self, alpha, start: int = 0) -> None:
        self.add(self.chunk_sums(alpha, start))

    def chunk_sums(self, alpha, start: int = 0) -> RoutingSums:
        """The kernel's sums of one chunk starting at token `start` (with its tokens' groups, if any);
        thread-safe, so it may run on worker threads (stream.map_chunks)."""
        groups = None if self.groups is None else self.groups.of(start, start + len(alpha))
        return self.kernel.sums(alpha, start, groups)

    def add(self, sums: RoutingSums) -> None:
        self.total.add(sums)
        if self.group_sums is not None:
            if sums.groups is None:
                raise ValueError("chunk sums without per-group sums added to an accumulator with groups")
            ids, part = sums.groups
            self.group_sums[ids] += part  # ids are distinct within a chunk

    def result(self) -> Routing:
        geo, kern = self.kernel.geo, self.kernel
        if self.tokens == 0:
            raise AnalysisError(kern.where, "routing statistics of an empty run (no tokens)")
        n, s = geo.valid.shape
        T = float(self.tokens)
        routed = geo.routed
        base = pd.DataFrame({
            "sublayer": np.asarray(geo.sublayers, dtype=np.int64),
            "sublayer_label": geo.sublayer_labels,
            "kind": geo.kinds,
        })
        per = base.copy()
        per["n_sources"] = geo.n_sources
        per["tokens"] = np.where(routed, self.tokens, 0)
        total = self.total
        for i, c in enumerate(STAT_COLUMNS):
            cnt = total.counts[i]
            with np.errstate(invalid="ignore", divide="ignore"):
                per[c] = np.where(routed & (cnt > 0), total.stats[i] / cnt, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            per["uniform_share"] = np.where(routed, 1.0 / geo.n_sources, np.nan)
            per["jump_rate"] = np.where(routed & geo.has_distance, total.jump / T, np.nan)
            per["top_embedding_rate"] = np.where(routed, total.top_embedding / T, np.nan)
        top = total.top
        usual = top.argmax(1)
        per["usual_source"] = [geo.label(i, j) if routed[i] else "" for i, j in enumerate(usual)]
        with np.errstate(invalid="ignore", divide="ignore"):
            per["off_usual_rate"] = np.where(routed, 1.0 - top.max(1) / T, np.nan)
            mean = total.share / T
            var = np.maximum(total.share_sq / T - mean**2, 0.0)
            spread = np.sqrt(np.where(geo.valid, var, 0.0).sum(1) / np.maximum(geo.n_sources, 1))
            per["spread"] = np.where(routed, spread, np.nan)
        per = per[routed].reset_index(drop=True)

        slot, src = np.nonzero(geo.valid)
        std = np.sqrt(var[slot, src])
        mean_s = mean[slot, src]
        uniform = 1.0 / geo.n_sources[slot]
        with np.errstate(invalid="ignore", divide="ignore"):
            cv = np.where(mean_s > 0, std / mean_s, np.inf)
        sources = pd.DataFrame({
            **geo.columns(slot, src),
            "mean_alpha": total.raw[slot, src] / T,
            "mean_share": mean_s,
            "std_share": std,
            "top_rate": top[slot, src] / T,
            "is_sink": (mean_s >= SINK_LIFT * uniform) & (mean_s >= SINK_MIN_MEAN) & (cv <= SINK_MAX_CV),
        })

        rows = []
        for i in np.nonzero(routed)[0]:
            for j in np.nonzero(geo.valid[i] & (top[i] > 0))[0]:
                if geo.is_embedding[i, j] or not geo.has_distance:
                    continue
                rows.append((geo.sublayers[i], geo.sublayer_labels[i], geo.kinds[i], float(geo.distance[i, j]),
                             geo.source_labels[i][j], int(top[i, j])))
        jumps = pd.DataFrame(rows, columns=["sublayer", "sublayer_label", "kind", "distance", "source_label", "count"])
        jumps["share"] = jumps["count"] / T
        jumps["is_jump"] = jumps["distance"] > kern.k
        jumps = jumps.sort_values(["sublayer", "distance"], kind="stable").reset_index(drop=True)

        cols = list(STAT_COLUMNS) + ["jump_rate", "top_embedding_rate", "off_usual_rate", "spread"]
        kinds = []
        for kind in ("attn", "mlp", "final"):
            part = per[per["kind"] == kind]
            if len(part):
                kinds.append({"kind": kind, "sublayers": len(part), **part[cols].mean(skipna=True).to_dict()})
        part = per[per["kind"].isin(["attn", "mlp"])]
        if len(part):
            kinds.append({"kind": "all", "sublayers": len(part), **part[cols].mean(skipna=True).to_dict()})
        by_kind = pd.DataFrame(kinds, columns=["kind", "sublayers", *cols])
        mean_alpha = np.where(geo.valid, total.raw / T, np.nan)
        return Routing(per, sources, jumps, by_kind, kern.k, geo.unit, self.tokens, mean_alpha, self.groups,
                       self.group_sums)


def is_signed(run) -> bool:
    """Whether shares must use |alpha| (unknown or signed mixers)."""
    return model_kind(run) not in NONNEGATIVE_KINDS


def routing_stats(run, k: float | None = None, chunk_tokens: int | None = None,
                  groups: GroupIndex | None = None) -> Routing:
    """Routing statistics of a run (module docstring), one chunk of tokens in memory at a time.

    run: a run directory, probe.Run or MemoryRun holding "alpha". k: the long-range window in the run's unit
    (default 4 sublayers, 2 blocks). chunk_tokens: tokens per chunk (default: the run's stored chunk, which
    lets a stored run's chunks be decoded and analysed on one thread per core: stream.py). One pass per
    chunk (routing_chunk.py). Weights without shares (NaN or infinite at a valid source, all zero) raise
    AnalysisError naming the token and sublayer; NaN in a stored run raises the reader's RunError instead.
    groups: the tokens' bootstrap groups (groups.group_index); the same pass then also sums the per-token
    statistics per group (Routing.group_sums, for compare.grouped_sums).
    """
    run = as_run(run)
    require(run, ["alpha"], "routing statistics")
    geo = run_geometry(run)
    if not geo.routed.any():
        raise AnalysisError(run_name(run), "no sublayer of this run has depth-attention sources")
    if groups is not None and len(groups.ids) != run.n_tokens:
        raise ValueError(f"groups number {len(groups.ids)} tokens, the run holds {run.n_tokens}")
    acc = RoutingAccumulator(geo, k, is_signed(run), run_name(run), groups)
    for sums in map_chunks(run, "alpha", acc.chunk_sums, chunk_tokens):
        acc.add(sums)
    return acc.result()
