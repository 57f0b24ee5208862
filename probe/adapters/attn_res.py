"""The PyPI package `attn-res` (0.1.0): `AttnResTransformer` in Full, Block and plain-residual (NONE) modes.

Its sublayer `layers.{k}` takes the stacked sources [N_src, batch, tokens, d] and returns f_l; its AttnRes
operator `layers.{k}.attn_res` returns h_l, so h_l is read from that operator's output (in NONE mode, from the
input of `layers.{k}.norm`: the running sum) and the weights are recomputed from its input exactly as its forward
forms them. The model's final output is a plain sum of the sources (no weights): there is no final mixer here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from depthscope.models import block_sources, full_sources

from ..adapter import Adapter, Input, Output, Sublayer, Weights
from .common import find_module, from_package

PACKAGE = "attn_res"


def attnres_weights(module: nn.Module, args: tuple, kwargs: dict, output) -> torch.Tensor:
    """AttnResOperator's depth weights from its input: softmax over sources of q . RMSNorm(v) -> [N_src, b, t]."""
    sources = args[0] if args else kwargs["sources"]  # [N_src, batch, tokens, d]
    logits = torch.einsum("d, n b t d -> n b t", module.pseudo_query, module.key_norm(sources))
    return torch.softmax(logits, dim=0)  # [N_src, batch, tokens]: sources on axis 0


@dataclass(frozen=True)
class BlockSources:
    """Source labels of attn-res Block AttnRes: emb, the completed blocks, and the partial sum when there is one.

    Follows AttnResTransformer._forward_block_attnres: layer k reads the blocks completed so far and the partial
    sum; the partial is closed into a block after layer k reads it when k > 0 and k % block_size == 0."""

    n_layers: int
    block_size: int

    def __call__(self, sublayer: int) -> list[str]:
        completed, partial = 1, False  # the embedding counts as the first completed block
        for k in range(sublayer - 1):  # layers before this one
            if k > 0 and k % self.block_size == 0 and partial:
                completed += 1
            partial = True
        return block_sources(completed, partial)


def detect(model: nn.Module) -> Adapter | None:
    found = find_module(model, lambda m: from_package(m, PACKAGE) and type(m).__name__ == "AttnResTransformer")
    if found is None:
        return None
    prefix, core = found
    return attn_res_adapter(core.cfg, prefix)


def attn_res_adapter(cfg, prefix: str = "") -> Adapter:
    """The adapter of an AttnResTransformer with TransformerConfig `cfg` (named `prefix` inside a wrapper)."""
    mode = getattr(cfg.attn_res_mode, "value", cfg.attn_res_mode)
    layer = prefix + "layers.{k}"
    if mode == "none":
        h, weights, sources = Input(layer + ".norm"), None, None
    else:
        h, weights = Output(layer + ".attn_res"), Weights(layer + ".attn_res", compute=attnres_weights, source_axis=0)
        sources = full_sources if mode == "full" else BlockSources(cfg.n_layers, cfg.block_size)
    params = (layer + ".norm", layer + ".fn")
    pattern = [Sublayer("{label}", h=h, f=Output(layer), weights=weights, params=params)]  # attn, mlp alternate
    return Adapter(pattern=pattern, repeat=cfg.n_layers, sources=sources, labels=(1, "targets"), d_model=cfg.d_model,
                   name=f"attn-res {mode}")
