"""The effective depth-mixing matrix M of every mixer, its row-normalised form and its effective rank.

Every method writes the input of sublayer l as  h_l = sum_j M[l, j] * v_j,  where v_0 is the embedding and v_j
(j = 1..L) the output of sublayer j; row L + 1 is the final mixer feeding the LM head. M is lower triangular
(M[l, j] = 0 for j >= l).

  residual       M[l, j] = 1 for j < l (every earlier output enters with weight 1).
  full_attnres   M[l, j] = alpha_l(source j): the depth attention itself.
  block_attnres  the weight of a completed block b_m is shared by every output of block m; the partial's
                 weight by every output of the current block before l; the embedding keeps its own column.
  denseformer    unrolled from the block averages: x starts as v_0; each sublayer adds its output; after block
                 i, x = sum_j a_{i,j} X_j (X_0 = v_0, X_j the stream leaving block j). M[l] = the coefficients
                 of x when sublayer l reads it.
  hyper (HC/mHC) unrolled per token from the taps: streams start as copies of v_0 (coefficient vectors
                 c_0[k] = e_0); M[l, :] = sum_k pre_l[k] c_{l-1}[k, :]; c_l[j] = sum_k R_l[k, j] c_{l-1}[k]
                 + post_l[j] e_l; the final row is sum_k c_L[k]. M is averaged over tokens.

From a run (`mixing_from_run`) M uses the token-mean of the recorded weights (exact for the linear forms above:
M is linear in alpha); hyper needs the "mix" and "post" taps, which runs do not record, so it comes from a
model and tokens (`mixing_from_model`, which works for every mixer).

Row-normalised M: M[l, :] / sum_j |M[l, j]|. Effective rank (Roy & Vetterli 2007): exp of the entropy of the
normalised singular values p_i = s_i / sum s; between 1 and the number of rows; `rank` is the numerical rank
(singular values above 1e-3 of the largest). Both are reported for M and for the row-normalised M, over the
rows 1..L (sublayers; the final row is left out so that methods with and without a final mixer compare).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from depthscope.models import (FINAL, PARTIAL, axis_label, block_number, kind_named, parse_source, source_sublayer,
    sublayer_kinds, sublayer_label)

from .errors import AnalysisError, NaNWeightError
from .runs import as_run, model_config, model_kind, require, run_name
from .scanner import Reducer, scan

RANK_RTOL = 1e-3


def effective_rank(matrix: np.ndarray) -> float:
    """exp(-sum p log p), p = singular values / their sum (0 for an all-zero matrix)."""
    s = np.linalg.svd(np.nan_to_num(np.asarray(matrix, dtype=np.float64)), compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def numerical_rank(matrix: np.ndarray, rtol: float = RANK_RTOL) -> int:
    s = np.linalg.svd(np.nan_to_num(np.asarray(matrix, dtype=np.float64)), compute_uv=False)
    return int((s > rtol * s.max()).sum()) if s.size and s.max() > 0 else 0


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    total = np.abs(m).sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, m / total, np.nan)


@dataclass
class Mixing:
    """M [L + 1, L + 1]: row r is consumer sublayer r + 1 (the last row the final mixer, NaN where the model has
    none), column j is source j (0 = embedding)."""

    matrix: np.ndarray
    kind: str
    n_sublayers: int

    @property
    def normalised(self) -> np.ndarray:
        return row_normalise(self.matrix)

    def body(self, normalised: bool = False) -> np.ndarray:
        """Rows 1..L (sublayers) x columns 0..L-1."""
        m = self.normalised if normalised else self.matrix
        return m[: self.n_sublayers, : self.n_sublayers]

    def ranks(self) -> dict:
        return {"kind": self.kind, "n_sublayers": self.n_sublayers,
                "effective_rank": effective_rank(self.body()), "rank": numerical_rank(self.body()),
                "effective_rank_normalised": effective_rank(self.body(True)),
                "rank_normalised": numerical_rank(self.body(True))}

    def frame(self) -> pd.DataFrame:
        """Tidy: sublayer (consumer), sublayer_label, kind, source (j), source_label, weight, weight_normalised."""
        L = self.n_sublayers
        # row r is consumer sublayer r + 1, which may draw on sources j <= r
        rows, cols = np.nonzero(np.tril(np.ones((L + 1, L + 1), dtype=bool)))
        norm = self.normalised
        labels = [axis_label(r + 1, L) for r in rows]
        frame = pd.DataFrame({
            "sublayer": rows + 1, "sublayer_label": labels,
            "kind": sublayer_kinds(labels),
            "source": cols, "source_label": [sublayer_label(int(c)) for c in cols],
            "weight": self.matrix[rows, cols], "weight_normalised": norm[rows, cols],
        })
        return frame.dropna(subset=["weight"]).reset_index(drop=True)


def _bounds(config: dict | None, n_sublayers: int) -> list[tuple[int, int]]:
    if not config:
        raise AnalysisError("mixing", "Block AttnRes mixing needs the model config (its block bounds)")
    from depthscope.models import ModelConfig

    return ModelConfig.from_dict(config).block_bounds


def mixing_from_weights(source_labels, sublayers, weights: np.ndarray, n_sublayers: int, kind: str | None = None,
                        config: dict | None = None) -> Mixing:
    """M from (mean) weights [slots, max_sources] with the run's source labels (module docstring).

    DenseFormer (layer{j} labels) is unrolled; sublayers without weights keep NaN rows except where the
    method defines them (DenseFormer rows in between averages)."""
    L = n_sublayers
    labels = [list(s) for s in source_labels]
    families = {p.family for row in labels for p in map(parse_source, row) if p is not None}
    M = np.full((L + 1, L + 1), np.nan)
    if "stream" in families:
        raise AnalysisError("mixing", "Hyper-Connection mixing needs the per-token mix and post taps; use "
                                      "mixing_from_model(model, tokens)")
    if "layer" in families:
        return _denseformer(labels, sublayers, weights, L)
    bounds = _bounds(config, L) if families & {"block", "partial"} else None
    block_of = {}
    if bounds:
        for n, (a, b) in enumerate(bounds, start=1):
            for l in range(a, b + 1):
                block_of[l] = (n, a, b)
    for i, (l, row) in enumerate(zip(sublayers, labels)):
        if not row or l > L + 1:
            continue
        r = np.zeros(L + 1)
        for j, s in enumerate(row):
            w = float(weights[i, j])
            m = block_number(s)
            if s == PARTIAL:
                first = block_of[l][1]
                r[first:l] += w
            elif m is not None:
                a, b = bounds[m - 1]
                r[a: b + 1] += w
            else:
                src = source_sublayer(s)
                if src is None:
                    raise AnalysisError("mixing", f"source label {s!r} has no place in the mixing matrix")
                r[src] += w
        M[l - 1] = r
    return Mixing(M, kind or "unknown", L)


def _denseformer(labels, sublayers, weights, L: int) -> Mixing:
    averages = {}
    for i, (l, row) in enumerate(zip(sublayers, labels)):
        if row:
            averages[(l - 1) // 2] = np.asarray(weights[i, : len(row)], dtype=np.float64)  # after block (l-1)/2
    M = np.full((L + 1, L + 1), np.nan)
    c = np.zeros(L + 1)
    c[0] = 1.0
    history = [c.copy()]
    for l in range(1, L + 1):
        M[l - 1] = c
        c = c.copy()
        c[l] += 1.0
        if l % 2 == 0:
            block = l // 2
            history.append(c.copy())
            if block not in averages:
                raise AnalysisError("mixing", f"DenseFormer weights after block {block} were not recorded")
            a = averages[block]
            c = sum(a[j] * history[j] for j in range(block + 1))
    M[L] = c
    return Mixing(M, "denseformer", L)


class MeanWeights(Reducer):
    """Scan reducer: the token-mean of the recorded weights [slots, max_sources] (NaN beyond valid sources)."""

    arrays = ("alpha",)

    def __init__(self, run):
        from .sources import run_geometry

        self.valid = run_geometry(run).valid
        self.where = run_name(run)
        self.total, self.count = np.zeros(self.valid.shape), 0

    def partial(self, chunk) -> tuple[np.ndarray, int]:
        a = torch.as_tensor(chunk["alpha"]).to(torch.float32)  # [T, slots, sources]
        total = a.sum(0, dtype=torch.float64).numpy()  # NaN beyond the sources stays there
        if np.isnan(total[self.valid]).any():
            raise NaNWeightError(self.where, "NaN depth-attention weight for a valid source")
        return np.where(self.valid, total, 0.0), a.shape[0]

    def merge(self, part: tuple[np.ndarray, int]) -> None:
        self.total += part[0]
        self.count += part[1]

    def result(self) -> np.ndarray:
        return np.where(self.valid, self.total / self.count, np.nan)


def mean_weights(run, chunk_tokens: int | None = None) -> np.ndarray:
    """Token-mean of the recorded weights [slots, max_sources] (NaN beyond valid sources), one scan."""
    run = as_run(run)
    require(run, ["alpha"], "the mixing matrix")
    return scan(run, {"mean": MeanWeights(run)}, chunk_tokens)["mean"]


def mixing_from_run(run, chunk_tokens: int | None = None, weights: np.ndarray | None = None) -> Mixing:
    """M of a recorded run from its token-mean weights (not for Hyper-Connections: see the module docstring).

    weights: the token-mean weights [slots, max_sources] when already at hand (routing_stats(run).mean_alpha
    sums them in its own pass), else mean_weights(run) streams over alpha once more."""
    run = as_run(run)
    cfg = model_config(run)
    L = int(cfg["n_layers"]) * 2 if cfg else max(l for l, lab in zip(run.sublayers, run.sublayer_labels)
                                                 if lab != FINAL)
    if weights is None:
        weights = mean_weights(run, chunk_tokens)
    elif np.ndim(weights) != 2 or len(weights) != len(run.source_labels):
        raise AnalysisError(run_name(run), f"mean weights of shape {np.shape(weights)} for "
                                           f"{len(run.source_labels)} sublayers")
    return mixing_from_weights(run.source_labels, run.sublayers, weights, L, model_kind(run), cfg)


@torch.no_grad()
def mixing_from_model(model, tokens: torch.Tensor) -> Mixing:
    """M of a depthscope model on `tokens` [batch, tokens] from its taps, averaged over tokens (any mixer)."""
    from depthscope.models import iter_taps

    cfg = model.cfg
    L = cfg.n_sublayers
    seen: dict[tuple[str, int], torch.Tensor] = {}
    labels: dict[int, list[str]] = {}
    handles = []
    for _, tap in iter_taps(model):
        if tap.what in ("alpha", "mix", "post"):
            def hook(module, args, out, tap=tap):
                seen[(tap.what, tap.sublayer)] = out.detach().float()
            handles.append(tap.register_forward_hook(hook))
            if tap.what == "alpha":
                labels[tap.sublayer] = list(tap.labels)
    try:
        model(tokens)
    finally:
        for h in handles:
            h.remove()
    if not kind_named(cfg.mixer).weights_give_mixing:
        return _hyper(seen, L)
    subs = sorted(labels)
    width = max(len(v) for v in labels.values())
    weights = np.full((len(subs), width), np.nan)
    for i, l in enumerate(subs):
        w = seen.get(("alpha", l))
        if w is not None:
            weights[i, : w.shape[-1]] = w.reshape(-1, w.shape[-1]).mean(0).double().numpy()
    return mixing_from_weights([labels[l] for l in subs], subs, weights, L, cfg.mixer, cfg.to_dict())


def _hyper(seen: dict, L: int) -> Mixing:
    from depthscope.probe import hyper_step, start_streams

    b, t, n = seen[("alpha", 1)].shape  # pre of sublayer 1: [b, t, n]
    c = start_streams(b, t, n, L + 1)
    M = torch.zeros(b, t, L + 1, L + 1, dtype=torch.float64)
    for l in range(1, L + 1):
        M[:, :, l - 1], c = hyper_step(c, seen[("alpha", l)], seen[("mix", l)], seen[("post", l)], l)
    M[:, :, L] = c.sum(-2)  # the final output is the sum of the streams
    return Mixing(M.mean((0, 1)).numpy(), "hyper", L)


def mixing_tables(mix: Mixing) -> dict[str, pd.DataFrame]:
    return {"mixing": mix.frame(), "mixing_rank": pd.DataFrame([mix.ranks()])}
