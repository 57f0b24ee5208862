"""DenseFormer: after each transformer block, a learned weighted average of the embedding and all block outputs.

Within a transformer block the standard residual applies. After block i, x = sum_{j=0..i} a_{i,j} X_j where
X_0 is the embedding and X_j the residual stream leaving block j; the a_{i,j} are unconstrained scalars
initialised to the identity (a_{i,i} = 1, others 0), so at initialisation the model is the PreNorm baseline.
The weights of the average after block i feed the next attention sublayer (the final norm after the last block).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..taps import Tap
from ..vocabulary import layer_sources
from .base import DepthMixer, weighted_sum


@dataclass
class DenseState:
    stream: torch.Tensor  # [batch, tokens, d]
    history: list[torch.Tensor]  # X_0 .. X_i


class DenseFormerMixer(DepthMixer):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        blocks = cfg.n_layers
        self.averages = nn.ParameterList(
            nn.Parameter(torch.nn.functional.one_hot(torch.tensor(i), i + 1).float()) for i in range(1, blocks + 1)
        )
        # The average after block i feeds sublayer 2i + 1 (the final mixer L + 1 after the last block).
        self.alpha_taps = nn.ModuleList(Tap("alpha", 2 * i + 1, layer_sources(i + 1)) for i in range(1, blocks + 1))
        self.residual_taps = nn.ModuleList(Tap("residual", l) for l in range(1, cfg.n_sublayers + 1))

    def start(self, embedding: torch.Tensor) -> DenseState:
        return DenseState(stream=embedding, history=[embedding])

    def sublayer_input(self, state: DenseState, index: int) -> torch.Tensor:
        return state.stream

    def absorb(self, state: DenseState, index: int, output: torch.Tensor) -> None:
        state.stream = self.residual_taps[index - 1](state.stream + output)
        if index % 2 == 0:  # end of transformer block i = index / 2
            block = index // 2
            state.history.append(state.stream)
            batch, tokens, _ = output.shape
            weights = self.averages[block - 1].to(output.dtype).expand(batch, tokens, block + 1)
            state.stream = weighted_sum(self.alpha_taps[block - 1](weights), state.history)

    def finish(self, state: DenseState) -> torch.Tensor:
        return state.stream
