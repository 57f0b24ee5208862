"""The one routing kernel: the statistics of `routing.py` for one chunk of weights, in a single pass.

`ChunkKernel.sums` gives their sums over tokens (the aggregate tables of routing_stats and analyze, and the
per-group sums of the confidence intervals); `ChunkKernel.token_stats` gives the same statistics per (token,
sublayer) (the per-token tables of per_token.py and the dashboard's token views), through the same block
pass and arithmetic. Definitions (shares, locality, long-range mass, entropy, the top source and its tie rule,
jumps): routing.py. How (measured with bench/analyses.py, 1M tokens x 32 sublayers x 33 sources, on 2 CPU
cores):

- Memory traffic bounds every pass over [tokens, sublayers, sources], so the chunk is worked through in
  blocks of `block_tokens` (1024) tokens whose float32 buffers stay in cache.
- Padding beyond each row's sources is cleared with one integer AND on the float32 bits (NaN and junk there
  become +0). Copying only the valid sources into a packed layout costs more than the padding it skips:
  strided copies of short rows are slow.
- Statistics linear in the shares (locality, embedding, long-range mass) are sums of the per-(sublayer,
  source) share sums that the sources table needs anyway: no per-token gather.
- The top source is one integer max over keys = (float32 bits of |alpha|) | tie rank. Float16 (and
  bfloat16) weights leave the low 13 mantissa bits of their float32 form zero, so the key orders by weight,
  then by the tie rule (the most recent source, then the oldest). No argmax (several times slower over a
  short last axis), and the counts per top source come from one bincount of the winning ranks. Other dtypes
  use int64 keys (bits << 13 | rank).
- log2 is numpy's (vectorised; torch's log is several times slower on CPU).
- A NaN at a valid source makes its row sum Z NaN: one check on [tokens, rows] instead of one per weight.
- Given each token's bootstrap group, the same pass also sums the per-token statistics per group
  (routing_groups.py), so the confidence intervals of comparison.py need no second pass over the weights.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from depthscope.models import TOKEN_STATISTICS

from .errors import AnalysisError, NaNWeightError
from .routing_groups import GROUP_FEATURES, GroupPlan
from .sources import SourceGeometry

BLOCK_TOKENS = 1024
RANK_BITS = 13  # low mantissa bits of float32 that are zero for float16 / bfloat16 values
_LN2 = math.log(2.0)
_TINY = 1e-30  # below the smallest float16: only turns log(0) into a finite number, which is then times 0


@dataclass
class RoutingSums:
    """Sums over tokens: per position of the sublayer axis ([n]) or per (position, source) ([n, S]), float64.

    stats / counts [len(TOKEN_STATISTICS), n]: sums of the per-token statistics and the tokens they hold (a
    statistic undefined for a position, e.g. norm_entropy with one source, has count 0). jump, top_embedding
    [n]: tokens whose top source is a jump / the embedding. top [n, S]: tokens per top source. raw, share,
    share_sq [n, S]: sums of alpha, of the shares p and of p^2. groups: when the kernel was given the tokens'
    groups, (group numbers [G_c], per-group sums [G_c, len(GROUP_FEATURES), n]) of routing_groups.py (not
    added by add(): the accumulator of routing.py gathers them by group number)."""

    tokens: int
    stats: np.ndarray
    counts: np.ndarray
    jump: np.ndarray
    top_embedding: np.ndarray
    top: np.ndarray
    raw: np.ndarray
    share: np.ndarray
    share_sq: np.ndarray
    groups: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def zeros(cls, n: int, s: int) -> "RoutingSums":
        f = len(TOKEN_STATISTICS)
        return cls(0, np.zeros((f, n)), np.zeros((f, n)), np.zeros(n), np.zeros(n), *(np.zeros((n, s)) for _ in range(4)))

    def add(self, other: "RoutingSums") -> None:
        self.tokens += other.tokens
        for name in ("stats", "counts", "jump", "top_embedding", "top", "raw", "share", "share_sq"):
            getattr(self, name).__iadd__(getattr(other, name))


class ChunkKernel:
    """Per-chunk `RoutingSums` of a source geometry (module docstring). Only positions with sources are
    computed, at the width of the largest of them. Thread-safe: each thread keeps its own scratch buffers,
    so chunks may be computed in parallel and their sums added in order."""

    def __init__(self, geo: SourceGeometry, k: float | None = None, signed: bool = True, where: str = "<run>",
                 block_tokens: int = BLOCK_TOKENS):
        self.geo = geo
        self.k = geo.default_k() if k is None else k
        self.signed = signed
        self.where = where
        self.block_tokens = block_tokens
        self.rows = rows = np.nonzero(geo.routed)[0]  # [g] positions with sources
        n = geo.n_sources[rows].astype(np.int64)  # [g]
        self.width = w = int(n.max()) if len(n) else 0
        self.whole = len(rows) == geo.valid.shape[0] and w == geo.valid.shape[1]  # nothing to select
        self.rows_t = torch.from_numpy(rows)
        self.ones = torch.ones(w)
        self.valid = valid = geo.valid[rows, :w]  # [g, w]
        self.keep = torch.from_numpy(np.where(valid, -1, 0).astype(np.int32))  # all bits where valid
        # tie rank: the most recent source n + 1, then the oldest n, ..., the second most recent 2; padding 0
        src = np.arange(w)[None, :]
        rank = np.where(valid, np.where(src == n[:, None] - 1, n[:, None] + 1, n[:, None] - src), 0)
        self.rank = torch.from_numpy(rank.astype(np.int32))  # [g, w]
        self.rank_index = torch.from_numpy(rank.astype(np.int64))  # [g, w] where source s's count lands
        self.source_of_rank = np.zeros((len(rows), w + 2), dtype=np.int64)  # [g, w + 2] source holding a rank
        r, c = np.nonzero(valid)
        self.source_of_rank[r, rank[r, c]] = c
        self.code_base = torch.arange(len(rows), dtype=torch.int32) * (w + 2)  # [g] row j's codes: j*(w+2)+rank
        # 0/1 masks [g, w] of the sources each share-linear statistic sums, and of jumps
        self.masks = {"embedding": geo.is_embedding[rows, :w]}
        if geo.has_distance:
            self.masks["locality"] = geo.nearest[rows, :w]
            self.masks["long_range"] = geo.long_range(self.k)[rows, :w]
        self.is_jump = self.masks.get("long_range", np.zeros_like(valid))  # non-embedding, more than k back
        with np.errstate(divide="ignore"):
            self.log_n = np.where(n > 1, np.log(np.maximum(n, 1)), np.nan)  # [g]
        self.group_plan = GroupPlan(rows, geo.valid.shape[0], valid, self.masks["embedding"],
                                    self.masks.get("locality"), self.masks.get("long_range"), rank, self.log_n)
        self._local = threading.local()

    def _scratch(self, tokens: int) -> dict[str, torch.Tensor]:
        """This thread's buffers: a / tmp [block, g, w] float32, and per-token [tokens, g] row results."""
        have = getattr(self._local, "buffers", None)
        if have is None or have["total"].shape[0] < tokens:
            g, w, b = len(self.rows), self.width, min(self.block_tokens, tokens)
            have = {"a": torch.empty(b, g, w), "tmp": torch.empty(b, g, w), "total": torch.empty(tokens, g),
                    "alogb": torch.empty(tokens, g), "kmax": torch.empty(tokens, g, dtype=torch.int64)}
            self._local.buffers = have
        return have

    def sums(self, alpha, start: int = 0, groups: np.ndarray | None = None) -> RoutingSums:
        """alpha [T, n, S] (numpy or torch, any float dtype; anything beyond each row's sources is ignored) ->
        RoutingSums. start: the run's index of the chunk's first token (for error messages). groups: optional
        [T] group number of each token (groups.py); then the result's `groups` holds the per-group sums."""
        x = self._checked(alpha)
        n, s = self.geo.valid.shape
        out = RoutingSums.zeros(n, s)
        out.tokens = t = x.shape[0]
        if groups is not None and len(groups) != t:
            raise ValueError(f"{len(groups)} group numbers for a chunk of {t} tokens")
        if t == 0 or len(self.rows) == 0:
            if groups is not None:  # no statistic defined: every group sum is 0, apart from counting nothing
                uniq = np.unique(np.asarray(groups, dtype=np.int64))
                out.groups = (uniq, np.zeros((len(uniq), len(GROUP_FEATURES), n)))
            return out
        buf = self._scratch(t)
        total, alogb, kmax = buf["total"][:t], buf["alogb"][:t], buf["kmax"][:t]  # [T, g]
        if groups is not None:  # each token's index into the chunk's group numbers uniq [G]
            uniq, local = np.unique(np.asarray(groups, dtype=np.int64), return_inverse=True)
            local = local.ravel()
            linear = torch.zeros(len(uniq), 3, len(self.rows), dtype=torch.float64)  # [G, 3, g]
        exact = x.dtype in (torch.float16, torch.bfloat16) and self.width + 1 < (1 << RANK_BITS)
        bits = RANK_BITS if exact else max(RANK_BITS, (self.width + 1).bit_length())
        raw, share, share_sq = (torch.zeros(len(self.rows), self.width, dtype=torch.float64) for _ in range(3))
        for b0 in range(0, t, self.block_tokens):
            b1 = min(b0 + self.block_tokens, t)
            a, tmp = buf["a"][: b1 - b0], buf["tmp"][: b1 - b0]  # [B, g, w]
            raw += self._load(x[b0:b1], a)
            self._row_sum(a, total[b0:b1])  # Z
            self._top_keys(a, tmp, kmax[b0:b1], exact, bits)
            # sum a log2 a (log2 of 0 made finite first; numpy's log2 is the fast one)
            torch.clamp_min(a, _TINY, out=tmp)
            np.log2(tmp.numpy(), out=tmp.numpy())
            self._row_sum(tmp.mul_(a), alogb[b0:b1])
            # shares p = a / Z
            torch.mul(a, total[b0:b1].reciprocal().unsqueeze(-1), out=tmp)
            share += tmp.sum(0) if groups is None else self.group_plan.add_shares(tmp, local[b0:b1], linear)
            share_sq += tmp.square_().sum(0)
        self._check(total, start)
        rows, w = self.rows, self.width
        out.raw[rows, :w], out.share[rows, :w], out.share_sq[rows, :w] = raw.numpy(), share.numpy(), share_sq.numpy()
        code = self._top(kmax, bits, out)
        entropy = self._stats(total, alogb, out)
        if groups is not None:
            out.groups = self.group_plan.finish(uniq, local, linear, entropy, code)
        return out

    def token_stats(self, alpha, start: int = 0) -> dict[str, np.ndarray]:
        """The per-token statistics whose sums `sums()` takes, one value per (token, position): alpha [T, n, S]
        -> name -> [T, n] float64 (NaN at positions without sources and where a statistic is undefined) for
        TOKEN_STATISTICS, plus "top" [T, n] int64 (source index of the top source; -1 without sources),
        "top_distance" (NaN for the embedding), "top_embedding" and "jump" (bool). Same block pass and the same
        arithmetic as sums() (the share-linear ones as masked sums over the sources, divided by Z)."""
        x = self._checked(alpha)
        t = x.shape[0]
        n = self.geo.valid.shape[0]
        out = {name: np.full((t, n), np.nan) for name in TOKEN_STATISTICS}
        out["top"] = np.full((t, n), -1, dtype=np.int64)
        out["top_distance"] = np.full((t, n), np.nan)
        out["top_embedding"] = np.zeros((t, n), dtype=bool)
        out["jump"] = np.zeros((t, n), dtype=bool)
        if t == 0 or len(self.rows) == 0:
            return out
        buf = self._scratch(t)
        total, alogb, kmax = buf["total"][:t], buf["alogb"][:t], buf["kmax"][:t]  # [T, g]
        exact = x.dtype in (torch.float16, torch.bfloat16) and self.width + 1 < (1 << RANK_BITS)
        bits = RANK_BITS if exact else max(RANK_BITS, (self.width + 1).bit_length())
        masks = {name: torch.from_numpy(m.astype(np.float32)) for name, m in self.masks.items()}  # [g, w]
        linear = {name: torch.empty(t, len(self.rows)) for name in masks}  # [T, g] sum of a over the mask
        for b0 in range(0, t, self.block_tokens):
            b1 = min(b0 + self.block_tokens, t)
            a, tmp = buf["a"][: b1 - b0], buf["tmp"][: b1 - b0]  # [B, g, w]
            self._load(x[b0:b1], a)
            self._row_sum(a, total[b0:b1])
            self._top_keys(a, tmp, kmax[b0:b1], exact, bits)
            for name, mask in masks.items():
                torch.mul(a, mask, out=tmp)
                self._row_sum(tmp, linear[name][b0:b1])
            torch.clamp_min(a, _TINY, out=tmp)
            np.log2(tmp.numpy(), out=tmp.numpy())
            self._row_sum(tmp.mul_(a), alogb[b0:b1])
        self._check(total, start)
        rows = self.rows
        for name, value in linear.items():
            out[name][:, rows] = value.div_(total).numpy()
        rank = (kmax & ((1 << bits) - 1)).numpy()  # [T, g] winning tie rank
        top = self.source_of_rank[np.arange(len(rows))[None, :], rank]  # [T, g] source index
        out["top"][:, rows] = top
        out["top_embedding"][:, rows] = self.masks["embedding"][np.arange(len(rows))[None, :], top]
        if self.geo.has_distance:
            dist = self.geo.distance[rows][np.arange(len(rows))[None, :], top]  # [T, g]
            out["top_distance"][:, rows] = np.where(out["top_embedding"][:, rows], np.nan, dist)
            out["jump"][:, rows] = self.is_jump[np.arange(len(rows))[None, :], top]
        ent = self._entropy(total, alogb)  # [T, g]
        out["entropy"][:, rows] = ent.numpy()
        out["eff_sources"][:, rows] = np.exp(ent.numpy())
        with np.errstate(invalid="ignore"):
            out["norm_entropy"][:, rows] = ent.numpy() / self.log_n  # NaN with one source
        return out

    def _checked(self, alpha) -> torch.Tensor:
        x = torch.as_tensor(alpha)
        n, s = self.geo.valid.shape
        if x.dim() != 3 or tuple(x.shape[1:]) != (n, s):
            raise AnalysisError(self.where, f"alpha chunk of shape {tuple(x.shape)}, expected [tokens, {n}, {s}]")
        return x

    def _row_sum(self, a: torch.Tensor, out: torch.Tensor) -> None:
        """out [B, g] = sum over sources of a [B, g, w]: a matrix-vector product with ones (BLAS), about
        1.6 times faster than sum(-1) over a short last axis."""
        torch.mv(a.view(-1, self.width), self.ones, out=out.view(-1))

    def _load(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """a [B, g, w] = |alpha| of the rows with sources as float32, +0 beyond each row's sources; returns the
        block's sum over tokens of alpha (signed) [g, w]."""
        a.copy_(x if self.whole else x.index_select(1, self.rows_t)[:, :, : self.width])
        a.view(torch.int32).bitwise_and_(self.keep)  # padding (NaN, junk) -> +0.0
        raw = a.sum(0)
        if self.signed:
            a.abs_()
        return raw

    def _top_keys(self, a: torch.Tensor, tmp: torch.Tensor, kmax: torch.Tensor, exact: bool, bits: int) -> None:
        """kmax [B, g] = the largest key (weight bits, then tie rank) per token and row."""
        if exact:  # the low bits of a are zero: OR-ing the rank cannot carry into the weight
            keys = torch.bitwise_or(a.view(torch.int32), self.rank, out=tmp.view(torch.int32))
        else:
            keys = (a.view(torch.int32).to(torch.int64) << bits) | self.rank.to(torch.int64)
        kmax.copy_(keys.amax(-1))

    def _top(self, kmax: torch.Tensor, bits: int, out: RoutingSums) -> torch.Tensor:
        """Counts per top source, top-embedding and jump counts, from the winning ranks of a chunk; returns the
        codes [T, g] int32 = row * (w + 2) + winning rank."""
        g, w = len(self.rows), self.width
        code = (kmax & ((1 << bits) - 1)).to(torch.int32) + self.code_base  # [T, g] row and winning rank
        by_rank = torch.bincount(code.view(-1), minlength=g * (w + 2)).view(g, w + 2)
        top = np.where(self.valid, by_rank.gather(1, self.rank_index).numpy(), 0).astype(np.float64)  # [g, w]
        out.top[self.rows, :w] = top
        out.top_embedding[self.rows] = (top * self.masks["embedding"]).sum(1)
        if self.geo.has_distance:
            out.jump[self.rows] = (top * self.is_jump).sum(1)
        return code

    def _stats(self, total: torch.Tensor, alogb: torch.Tensor, out: RoutingSums) -> torch.Tensor:
        """Sums over tokens of the per-token statistics (module docstring of routing.py) into `out`; returns
        the per-token entropy [T, g] (in alogb's buffer)."""
        rows, w, t = self.rows, self.width, total.shape[0]
        col = {name: i for i, name in enumerate(TOKEN_STATISTICS)}
        share = out.share[rows, :w]
        for name, mask in self.masks.items():  # linear in the shares: sums of the share sums
            out.stats[col[name], rows] = (share * mask).sum(1)
            out.counts[col[name], rows] = t
        ent = self._entropy(total, alogb)
        out.stats[col["entropy"], rows] = ent.sum(0, dtype=torch.float64).numpy()
        out.stats[col["eff_sources"], rows] = torch.from_numpy(np.exp(ent.numpy())).sum(0, dtype=torch.float64).numpy()
        out.counts[col["entropy"], rows] = out.counts[col["eff_sources"], rows] = t
        # norm_entropy = H / log(#sources), undefined (count 0) with one source
        defined = np.isfinite(self.log_n)
        out.stats[col["norm_entropy"], rows[defined]] = out.stats[col["entropy"], rows[defined]] / self.log_n[defined]
        out.counts[col["norm_entropy"], rows[defined]] = t
        return ent

    @staticmethod
    def _entropy(total: torch.Tensor, alogb: torch.Tensor) -> torch.Tensor:
        """Per-token entropy H [T, g] in alogb's buffer: H = log Z - (sum a ln a) / Z, with sum a ln a =
        ln 2 * sum a log2 a (numpy's log and exp: faster than torch's)."""
        ent = alogb.mul_(_LN2).div_(total)
        np.subtract(np.log(total.numpy()), ent.numpy(), out=ent.numpy())
        return ent.clamp_min_(0.0)

    def _check(self, total: torch.Tensor, start: int) -> None:
        """One clear error for weights that give no shares: NaN or infinite at a valid source, or all zero."""
        lo, hi = torch.aminmax(total)  # NaN propagates into both
        if bool(lo > 0) and bool(hi < math.inf):
            return
        for bad, problem in ((torch.isnan(total), "NaN depth-attention weight for a valid source"),
                             (torch.isinf(total), "infinite depth-attention weight"),
                             (total <= 0, "all-zero depth-attention weights")):
            if bad.any():
                ti, j = (int(v) for v in torch.nonzero(bad)[0])
                where = f"token {start + ti}, sublayer {self.geo.sublayer_labels[self.rows[j]]}"
                if problem.startswith("NaN"):
                    raise NaNWeightError(self.where, f"{problem} ({where})")
                raise AnalysisError(self.where, f"{problem} ({where}): shares are undefined")
