"""The interface every depth mixer implements, a growing stack Full AttnRes keeps its logits in, the softmax
over a few sources, and the weighted sum of a list of sources (DenseFormer)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .row_mix import mix_rows
from .tracking import tracked


class DepthMixer(nn.Module):
    """Forms each sublayer's input from the embedding and earlier sublayer outputs.

    The transformer calls, in order: `start(embedding)`, then for l = 1..L `sublayer_input(state, l)` and
    `absorb(state, l, output)`, then `finish(state)` whose result feeds the final norm. `state` is a plain
    per-forward object owned by the mixer; nothing persists on the module between forwards.
    """

    def start(self, embedding: torch.Tensor) -> Any:
        raise NotImplementedError

    def sublayer_input(self, state: Any, index: int) -> torch.Tensor:
        raise NotImplementedError

    def absorb(self, state: Any, index: int, output: torch.Tensor) -> None:
        raise NotImplementedError

    def finish(self, state: Any) -> torch.Tensor:
        raise NotImplementedError


class SourceStack:
    """Tensors [batch, tokens, k] stacked along a new axis -2 as they arrive -> `tensor` [batch, tokens, n, k].

    Without autograd every append writes into one buffer allocated for `capacity` entries, so nothing is
    re-copied as the stack grows. With autograd it concatenates instead: writing into a buffer that autograd
    saved for an earlier step's backward (a slice read before this append) would invalidate that pass. Either
    way `tensor` is a fresh view per append, and entries already appended are never written again.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self._buffer: torch.Tensor | None = None
        self.tensor: torch.Tensor | None = None

    def append(self, value: torch.Tensor) -> None:
        value = value.unsqueeze(-2)  # [batch, tokens, 1, k]
        if tracked(value):
            self.tensor = value if self.tensor is None else torch.cat([self.tensor, value], dim=-2)
        else:
            if self._buffer is None:
                self._buffer = value.new_empty(*value.shape[:-2], self.capacity, value.shape[-1])
            self._buffer[..., self.size : self.size + 1, :] = value
            self.tensor = self._buffer[..., : self.size + 1, :]
        self.size += 1


def weighted_sum(weights: torch.Tensor, values: list[torch.Tensor]) -> torch.Tensor:
    """sum_i weights[..., i] * values[i]; weights [batch, tokens, sources], each value [batch, tokens, d]."""
    stacked = torch.stack(values, dim=-2)  # [batch, tokens, sources, d]
    return mix_rows(weights.unsqueeze(-2), stacked).squeeze(-2)  # [batch, tokens, d]


# Up to this many sources, softmax is computed as exp(x - logsumexp(x)): torch's softmax kernel is slow on a short
# last axis (2.5x at 9 sources, 3.5x at 8 sources x 4 rows); from about 20 sources on it is the faster one.
SHORT_AXIS = 16


def source_softmax(logits: torch.Tensor, log_norm: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the sources (last axis). log_norm: their logsumexp [..., 1], when the caller already has it."""
    if log_norm is None and logits.shape[-1] > SHORT_AXIS:
        return torch.softmax(logits, dim=-1)
    if log_norm is None:
        log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    return torch.sub(logits, log_norm).exp_()
