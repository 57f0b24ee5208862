"""Source geometry: how far back each source of each sublayer lies, read off the run's source labels (parsed by
depthscope.models.vocabulary) in the unit of distance its mixer kind declares.

For position i of the sublayer axis (consumer sublayer l = sublayers[i]; L + 1 is the final mixer) and its
j-th source, `distance[i, j]` is how far back the source lies, in the run's **unit**:

  sublayers (Full AttnRes, residual, DenseFormer, adapter runs):
    emb          sublayer 0                       distance l
    attn{i}      the output of sublayer 2i - 1     distance l - (2i - 1)
    mlp{i}       the output of sublayer 2i         distance l - 2i
    sub{i}       the output of sublayer i          distance l - i       (probe.Adapter's default labels)
    layer{j}     DenseFormer: the stream leaving transformer block j, i.e. after sublayer 2j: distance l - 2j
  blocks (Block AttnRes; the consumer sits in block n = 1 + the number of block{m} labels it sees):
    emb          b_0                               distance n
    block{m}     the completed block m             distance n - m
    partial      the current block's partial sum   distance 0
  none (Hyper-Connections):
    stream{k}    a parallel residual stream: it mixes every depth, so it has no distance (NaN); locality,
                 long-range mass and jumps are undefined (NaN) for such runs, entropy and sinks still hold.

So the immediate predecessor is at distance 1 (sublayers) and the partial at 0 (blocks). Labels not listed
above get NaN. `nearest[i, j]` marks the valid source(s) with the smallest distance at position i (the
embedding included: it is the nearest source of sublayer 1 and of the first sublayer of block 1). A run whose
mixer kind is not known takes the unit its labels imply (models.vocabulary.unit_of_labels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from depthscope.models import EMBEDDING, PARTIAL, block_number, source_sublayer, sublayer_kinds, unit_of_labels

from .runs import mixer_kind

# Window k of long-range mass and jumps when none is given, per unit: 4 sublayers (two transformer blocks
# back) or 2 blocks.
DEFAULT_K = {"sublayers": 4, "blocks": 2, "none": 4}


@dataclass
class SourceGeometry:
    """Per (sublayer-axis position, source column) facts, all [slots, max_sources] arrays.

    valid: the source exists; is_embedding: it is the embedding (b_0); distance: how far back (float, NaN
    where undefined or invalid); nearest: the valid source(s) of smallest distance. unit: 'sublayers',
    'blocks' or 'none'. kinds: attn / mlp / final per position.
    """

    sublayers: list[int]
    sublayer_labels: list[str]
    source_labels: list[list[str]]
    unit: str
    valid: np.ndarray
    is_embedding: np.ndarray
    distance: np.ndarray
    nearest: np.ndarray
    kinds: list[str] = field(default_factory=list)

    @property
    def n_slots(self) -> int:
        return len(self.sublayers)

    @property
    def max_sources(self) -> int:
        return self.valid.shape[1]

    @property
    def n_sources(self) -> np.ndarray:
        return self.valid.sum(1)

    @property
    def has_distance(self) -> bool:
        return self.unit != "none"

    @property
    def routed(self) -> np.ndarray:
        """[slots] bool: the position has depth-attention weights (at least one source)."""
        return self.n_sources > 0

    def default_k(self) -> int:
        return DEFAULT_K[self.unit]

    def long_range(self, k: int) -> np.ndarray:
        """Valid, non-embedding sources more than k back ([slots, max_sources] bool)."""
        with np.errstate(invalid="ignore"):
            return self.valid & ~self.is_embedding & (np.nan_to_num(self.distance, nan=-1.0) > k)

    def columns(self, slot: np.ndarray, src: np.ndarray) -> dict:
        """The identifying columns of tidy (sublayer-axis position, source) rows: sublayer, sublayer_label, kind,
        source, source_label, distance, is_embedding."""
        return {
            "sublayer": np.asarray(self.sublayers, dtype=np.int64)[slot],
            "sublayer_label": np.asarray(self.sublayer_labels, dtype=object)[slot],
            "kind": np.asarray(self.kinds, dtype=object)[slot],
            "source": src.astype(np.int64),
            "source_label": [self.source_labels[i][j] for i, j in zip(slot, src)],
            "distance": self.distance[slot, src],
            "is_embedding": self.is_embedding[slot, src],
        }

    def label(self, slot: int, source: int) -> str:
        labels = self.source_labels[slot]
        return labels[source] if source < len(labels) else ""


def geometry(source_labels: Sequence[Sequence[str]], sublayers: Sequence[int], sublayer_labels: Sequence[str],
             max_sources: int | None = None, unit: str | None = None) -> SourceGeometry:
    """Build the geometry of a sublayer axis from its source labels (see the module docstring). unit: the run's
    unit of distance (its mixer kind's); None takes the one the labels imply."""
    labels = [list(s) for s in source_labels]
    width = max([len(s) for s in labels] + [1]) if max_sources is None else max_sources
    slots = len(labels)
    unit = unit_of_labels(labels) if unit is None else unit
    valid = np.zeros((slots, width), dtype=bool)
    is_emb = np.zeros((slots, width), dtype=bool)
    distance = np.full((slots, width), np.nan)
    for i, (l, row) in enumerate(zip(sublayers, labels)):
        valid[i, : len(row)] = True
        blocks = [block_number(s) for s in row]
        block_n = 1 + sum(1 for m in blocks if m is not None)
        for j, (s, m) in enumerate(zip(row, blocks)):
            is_emb[i, j] = s == EMBEDDING
            if unit == "blocks":
                if s == EMBEDDING:
                    distance[i, j] = block_n
                elif s == PARTIAL:
                    distance[i, j] = 0
                elif m is not None:
                    distance[i, j] = block_n - m
            elif unit == "sublayers":
                src = source_sublayer(s)
                if src is not None:
                    distance[i, j] = l - src
    nearest = np.zeros_like(valid)
    for i in range(slots):
        d = np.where(valid[i], distance[i], np.nan)
        if np.isfinite(d).any():
            nearest[i] = d == np.nanmin(d)
    return SourceGeometry(list(sublayers), list(sublayer_labels), labels, unit, valid, is_emb, distance, nearest,
                          sublayer_kinds(sublayer_labels))


def run_geometry(run) -> SourceGeometry:
    """The geometry of a run (probe.Run or MemoryRun), padded to its alpha array's source width."""
    width = None
    if "alpha" in run.captured:
        arrays = getattr(run, "arrays", {})
        alpha = arrays.get("alpha") if isinstance(arrays, dict) else None
        if alpha is not None:
            width = alpha.shape[2]
    return geometry(run.source_labels, run.sublayers, run.sublayer_labels, width, mixer_kind(run).unit)


def source_table(geo: SourceGeometry):
    """Tidy table of the geometry: sublayer, sublayer_label, kind, source, source_label, distance, is_embedding,
    is_nearest (valid sources only)."""
    import pandas as pd

    slot, src = np.nonzero(geo.valid)
    return pd.DataFrame({**geo.columns(slot, src), "is_nearest": geo.nearest[slot, src]})
