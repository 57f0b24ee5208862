"""Built-in adapters for depth-routing code people already have; `Probe(model)` uses them without being asked.

    for_model(model) -> Adapter | None    the adapter Probe(model) would use (print it to copy and change it)

  attn_res             the PyPI package attn-res: AttnResTransformer (Full, Block and plain-residual modes)
  hyper_connections    the PyPI package hyper-connections: HC and mHC residual wrappers inside any model
  hf                   Hugging Face transformers decoder-only models (Llama / Qwen naming, GPT-2): the baseline

flash-linear-attention's AttnRes (`attnres_block_size`) runs a fused kernel that never forms the weights; an
adapter for it would recompute them from the kernel module's inputs with `Weights(compute=...)`, as the attn-res
one does. It needs triton (a GPU), so it is not built in: no adapter here claims it.
"""
from __future__ import annotations

from torch import nn

from ..adapter import Adapter
from . import attn_res, hf, hyper_connections

DETECTORS = (attn_res.detect, hyper_connections.detect, hf.detect)


def for_model(model: nn.Module) -> Adapter | None:
    """The built-in adapter for `model`, or None when no built-in one recognises it."""
    for detect in DETECTORS:
        adapter = detect(model)
        if adapter is not None:
            return adapter
    return None


__all__ = ["for_model", "attn_res", "hf", "hyper_connections"]
