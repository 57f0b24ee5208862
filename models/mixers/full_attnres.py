"""Full Attention Residuals: each sublayer attends over the embedding and every earlier sublayer OUTPUT.

Sources of sublayer l: v_0 = embedding, v_i = f_i(h_i) for i < l. logit_i = w_l . RMSNorm_l(v_i) with one
learned pseudo-query w_l per sublayer (zero at init, so weights start uniform), no 1/sqrt(d), no bias;
alpha = softmax over sources; h_l = sum_i alpha_i v_i with raw (unnormalised) values. An extra AttnRes with its
own query and key norm (index L + 1) mixes all L + 1 sources for the final norm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..taps import Tap
from ..vocabulary import full_sources
from .base import DepthMixer, SourceStack, source_softmax
from .key_logits import key_logits
from .source_bank import SourceBank


class PseudoQueries(nn.Module):
    """w_l and the gain of each mixer's key RMSNorm, for mixers 1..L+1 (row l - 1 serves sublayer l)."""

    def __init__(self, n_mixers: int, d_model: int):
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(n_mixers, d_model))
        self.key_gains = nn.Parameter(torch.ones(n_mixers, d_model))

    def effective(self) -> torch.Tensor:
        """w_l * g_l: w_l . (g_l * k_hat) = (w_l * g_l) . k_hat, so a key's unit-RMS form is normalised once."""
        return self.queries * self.key_gains  # [mixers, d]


@dataclass
class FullState:
    # Sources v_0 .. v_{l-1} and their logits against every mixer: queries are static, so one matmul per source
    # gives its logits for all consumers at once.
    values: SourceBank  # [batch, tokens, sources, d]
    logits: SourceStack  # [batch, tokens, sources, L + 1]
    queries: torch.Tensor  # w * g [mixers, d], formed once per forward


class FullAttnResMixer(DepthMixer):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        total = cfg.n_sublayers
        self.depth = PseudoQueries(total + 1, cfg.d_model)
        self.alpha_taps = nn.ModuleList(
            Tap("alpha", l, full_sources(l)) for l in range(1, total + 2)
        )

    def _add_source(self, state: FullState, value: torch.Tensor) -> None:
        state.values.append(value)
        state.logits.append(key_logits(value, state.queries))  # [batch, tokens, L + 1]

    def start(self, embedding: torch.Tensor) -> FullState:
        capacity = len(self.alpha_taps)
        state = FullState(SourceBank(capacity, rows=capacity), SourceStack(capacity), self.depth.effective())
        self._add_source(state, embedding)
        return state

    def _mix(self, state: FullState, index: int) -> torch.Tensor:
        logits = state.logits.tensor[..., index - 1]  # every source so far, seen by mixer `index`: [b, t, sources]
        alpha = self.alpha_taps[index - 1](source_softmax(logits))  # [batch, tokens, sources]
        return state.values.mix(alpha.unsqueeze(-2)).squeeze(-2)  # [batch, tokens, d]

    def sublayer_input(self, state: FullState, index: int) -> torch.Tensor:
        return self._mix(state, index)

    def absorb(self, state: FullState, index: int, output: torch.Tensor) -> None:
        self._add_source(state, output)

    def finish(self, state: FullState) -> torch.Tensor:
        out = self._mix(state, len(self.alpha_taps))
        state.values.close()
        return out
