"""The interface every depth mixer implements: how sublayer inputs are formed from what came before."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


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


def weighted_sum(weights: torch.Tensor, values: list[torch.Tensor]) -> torch.Tensor:
    """sum_i weights[..., i] * values[i]; weights [batch, tokens, sources], each value [batch, tokens, d]."""
    stacked = torch.stack(values, dim=-2)  # [batch, tokens, sources, d]
    return (weights.unsqueeze(-2) @ stacked).squeeze(-2)  # [batch, tokens, d]
