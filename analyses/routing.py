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

from .errors import AnalysisError
from .groups import GroupIndex
from depthscope.models import ATTN, FINAL, MLP, TOKEN_STATISTICS

from .routing_chunk import ChunkKernel, RoutingSums
from .routing_groups import GROUP_FEATURES
from .runs import as_run, mixer_kind, require, run_name
from .sources import SourceGeometry, run_geometry
from .scanner import Reducer, scan

SINK_MIN_MEAN = 0.1
SINK_LIFT = 2.0
SINK_MAX_CV = 0.5


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


class RoutingAccumulator(Reducer):
    """The scan reducer behind `Routing` (scanner.py): per chunk the one-pass kernel's sums (routing_chunk.py,
    thread-safe), added in chunk order; result() builds the tables. groups: when given, the chunk sums carry
    per-group sums (kernel.sums(..., groups=...)), gathered here."""

    arrays = ("alpha",)

    def __init__(self, geo: SourceGeometry, k: float | None = None, signed: bool = True, where: str = "<run>",
                 groups: GroupIndex | None = None):
        self.kernel = ChunkKernel(geo, k, signed, where)
        self.total = RoutingSums.zeros(*geo.valid.shape)
        self.groups = groups
        self.group_sums = (np.zeros((groups.n_groups, len(GROUP_FEATURES), geo.valid.shape[0]))
                           if groups is not None else None)

    @classmethod
    def of_run(cls, run, k: float | None = None, groups: GroupIndex | None = None) -> "RoutingAccumulator":
        """The reducer of a run's routing statistics (errors as routing_stats raises them)."""
        require(run, ["alpha"], "routing statistics")
        geo = run_geometry(run)
        if not geo.routed.any():
            raise AnalysisError(run_name(run), "no sublayer of this run has depth-attention sources")
        if groups is not None and len(groups.ids) != run.n_tokens:
            raise ValueError(f"groups number {len(groups.ids)} tokens, the run holds {run.n_tokens}")
        return cls(geo, k, is_signed(run), run_name(run), groups)

    @property
    def tokens(self) -> int:
        return self.total.tokens

    def update(self, alpha, start: int = 0) -> None:
        self.merge(self.chunk_sums(alpha, start))

    def chunk_sums(self, alpha, start: int = 0) -> RoutingSums:
        """The kernel's sums of one chunk starting at token `start` (with its tokens' groups, if any)."""
        groups = None if self.groups is None else self.groups.of(start, start + len(alpha))
        return self.kernel.sums(alpha, start, groups)

    def partial(self, chunk) -> RoutingSums:
        return self.chunk_sums(chunk["alpha"], chunk.start)

    def merge(self, sums: RoutingSums) -> None:
        self.total.add(sums)
        if self.group_sums is not None:
            if sums.groups is None:
                raise ValueError("chunk sums without per-group sums added to an accumulator with groups")
            ids, part = sums.groups
            self.group_sums[ids] += part  # ids are distinct within a chunk

    add = merge

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
        for i, c in enumerate(TOKEN_STATISTICS):
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

        cols = list(TOKEN_STATISTICS) + ["jump_rate", "top_embedding_rate", "off_usual_rate", "spread"]
        kinds = []
        for kind in (ATTN, MLP, FINAL):
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
    return not mixer_kind(run).nonnegative


def routing_stats(run, k: float | None = None, chunk_tokens: int | None = None,
                  groups: GroupIndex | None = None) -> Routing:
    """Routing statistics of a run (module docstring), one chunk of tokens in memory at a time.

    run: a run directory, probe.Run or MemoryRun holding "alpha". k: the long-range window in the run's unit
    (default 4 sublayers, 2 blocks). chunk_tokens: tokens per chunk (default: the run's stored chunk, which
    lets a stored run's chunks be decoded and analysed on one thread per core: scanner.py). One pass per
    chunk (routing_chunk.py). Weights without shares (NaN or infinite at a valid source, all zero) raise
    AnalysisError naming the token and sublayer; NaN in a stored run raises the reader's RunError instead.
    groups: the tokens' bootstrap groups (groups.group_index); the same pass then also sums the per-token
    statistics per group (Routing.group_sums, for compare.grouped_sums).
    """
    run = as_run(run)
    return scan(run, {"routing": RoutingAccumulator.of_run(run, k, groups)}, chunk_tokens)["routing"]
