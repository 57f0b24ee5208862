"""Model configuration: one dataclass names every variant of the depth-routing model family."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .vocabulary import MIXERS


def option(default, help: str, **more):
    """A dataclass field whose metadata states its command-line option once: help text, and optionally flag,
    metavar, choices (read by depthscope.options)."""
    return field(default=default, metadata={"help": help, **more})


@dataclass
class ModelConfig:
    """A decoder-only transformer; `mixer` alone decides how each sublayer's input is formed.

    n_layers counts transformer blocks, each of two sublayers (attention, MLP): L = 2 * n_layers.
    sinkhorn_iters: Sinkhorn steps for mHC's mixing matrices (20, as mHC uses: columns sum to 1 exactly, rows
    to within about 1e-2 on strongly skewed logits; raise it for a tighter doubly stochastic projection).
    n_blocks is the number N of Block AttnRes blocks (S = ceil(L / N) sublayers each, rounded up to even so
    that a block starts at an attention sublayer, except S = 1 which is Full AttnRes).
    two_phase: Block AttnRes computes each block's queries against the completed blocks at once, then merges
    each partial in (exact; the default, as it reads each completed block once per block). False computes each
    sublayer's softmax over all of its sources as written: the reference form, equal to 1e-10 in float64.
    """

    vocab_size: int = 256
    d_model: int = option(64, "model width", flag="--d-model")
    n_layers: int = option(8, "transformer blocks; each has two sublayers, attention and MLP", flag="--layers")
    n_heads: int = option(4, "attention heads", flag="--heads")
    mlp_ratio: int = option(4, "MLP hidden width / d_model")
    max_seq_len: int = option(256, "longest sequence the model accepts")
    mixer: str = option("residual", "how each sublayer's input is formed", choices=MIXERS)
    n_blocks: int = option(8, "N, number of Block AttnRes blocks (block_attnres only; N = 2 * layers is Full "
                              "AttnRes)", flag="--blocks")
    two_phase: bool = option(True, "block_attnres: the exact two-phase computation (the default: each block's "
                                   "queries read the completed blocks once); --no-two-phase computes each "
                                   "sublayer's softmax over all its sources as written, the reference form")
    hyper_streams: int = option(4, "hyper: number of parallel residual streams", flag="--streams")
    mhc: bool = option(False, "hyper: manifold-constrained HC (doubly stochastic stream mixing via Sinkhorn)")
    sinkhorn_iters: int = 20
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.mixer not in MIXERS:
            raise ValueError(f"unknown mixer {self.mixer!r}; expected one of {MIXERS}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("the head dimension must be even for rotary position embeddings")
        if self.n_layers < 1 or self.n_blocks < 1 or self.hyper_streams < 1:
            raise ValueError("n_layers, n_blocks and hyper_streams must be at least 1")

    @property
    def n_sublayers(self) -> int:
        return 2 * self.n_layers

    @property
    def block_size(self) -> int:
        """S, sublayers per Block AttnRes block."""
        size = math.ceil(self.n_sublayers / self.n_blocks)
        if size > 1 and size % 2:
            size += 1
        return size

    @property
    def block_bounds(self) -> list[tuple[int, int]]:
        """1-based inclusive (first, last) sublayer of every block; the last block may be short."""
        size, total = self.block_size, self.n_sublayers
        return [(start, min(start + size - 1, total)) for start in range(1, total + 1, size)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)

