"""PreNorm residual baseline: x_0 = embedding, x_l = x_{l-1} + f_l(norm(x_{l-1}))."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..taps import Tap
from ..vocabulary import full_sources
from .base import DepthMixer


@dataclass
class ResidualState:
    stream: torch.Tensor  # x_l [batch, tokens, d]


class ResidualMixer(DepthMixer):
    """Every earlier output enters the sum with weight 1; the alpha taps say so, so M = 1 below the diagonal."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        total = cfg.n_sublayers
        self.alpha_taps = nn.ModuleList(
            Tap("alpha", l, full_sources(l)) for l in range(1, total + 2)
        )
        self.residual_taps = nn.ModuleList(Tap("residual", l) for l in range(1, total + 1))

    def _tap_unit_weights(self, stream: torch.Tensor, index: int) -> None:
        batch, tokens, _ = stream.shape
        # A broadcast view: costs no memory unless a probe copies it.
        self.alpha_taps[index - 1](stream.new_ones(1, 1, 1).expand(batch, tokens, index))

    def start(self, embedding: torch.Tensor) -> ResidualState:
        return ResidualState(stream=embedding)

    def sublayer_input(self, state: ResidualState, index: int) -> torch.Tensor:
        self._tap_unit_weights(state.stream, index)
        return state.stream

    def absorb(self, state: ResidualState, index: int, output: torch.Tensor) -> None:
        state.stream = self.residual_taps[index - 1](state.stream + output)

    def finish(self, state: ResidualState) -> torch.Tensor:
        self._tap_unit_weights(state.stream, len(self.alpha_taps))
        return state.stream
