"""Named identity taps: the model's whole observability contract.

A tap returns its input unchanged. Forward hooks registered on it (see `depthscope.probe`) read the tensor
as it passes. The model itself never records anything; a tap carries only static facts about what flows
through it, so a reader needs nothing else from the model.

Tap kinds (`Tap.what`):
  "alpha"    depth-attention weights of one mixer              [batch, tokens, sources]
  "input"    a sublayer's input h_l                            [batch, tokens, d_model]
  "output"   a sublayer's output f_l                           [batch, tokens, d_model]
  "residual" the residual stream x_l after sublayer l (baseline and peers keeping one) [batch, tokens, d_model]
  "partial"  Block AttnRes partial sum p after sublayer l      [batch, tokens, d_model]
  "streams"  Hyper-Connection streams after sublayer l         [batch, tokens, streams, d_model]
  "mix"      Hyper-Connection stream-mixing matrix R           [batch, tokens, streams, streams]
  "post"     Hyper-Connection depth weights of f_l per stream  [batch, tokens, streams]
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.modules import module as module_hooks  # torch keeps the global hook registries here

TAP_KINDS = ("alpha", "input", "output", "residual", "partial", "streams", "mix", "post")


class Tap(nn.Module):
    """Identity module at a named point of the forward pass.

    sublayer: 1-based index of the consuming sublayer (L + 1 for the final mixer feeding the LM head),
    what: one of TAP_KINDS, labels: names of the sources along the last axis (alpha taps only).
    """

    def __init__(self, what: str, sublayer: int, labels: Sequence[str] = ()):
        super().__init__()
        if what not in TAP_KINDS:
            raise ValueError(f"unknown tap kind {what!r}; expected one of {TAP_KINDS}")
        self.what = what
        self.sublayer = sublayer
        self.labels = tuple(labels)

    @property
    def n_sources(self) -> int:
        return len(self.labels)

    @property
    def watched(self) -> bool:
        """Whether a hook would see (or could replace) what passes: lets a mixer skip forming a tensor nobody reads."""
        return bool(
            self._forward_hooks
            or self._forward_pre_hooks
            or module_hooks._global_forward_hooks
            or module_hooks._global_forward_pre_hooks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        extra = f", sources={self.n_sources}" if self.labels else ""
        return f"what={self.what}, sublayer={self.sublayer}{extra}"


def iter_taps(model: nn.Module, what: str | None = None):
    """Yield (qualified name, Tap) for every tap of a model, optionally of one kind, in forward order."""
    for name, module in model.named_modules():
        if isinstance(module, Tap) and (what is None or module.what == what):
            yield name, module
