"""Block Attention Residuals.

Sublayers are cut into blocks of S consecutive sublayers (`ModelConfig.block_bounds`). b_0 = embedding, always
its own source; b_n = sum of the outputs of block n; the partial sum p = sum of the outputs so far in the
current block. The first sublayer of a block sees [b_0 .. b_{n-1}] only; later ones see [b_0 .. b_{n-1}, p].
Logits and values follow Full AttnRes (zero-initialised pseudo-query per sublayer, RMSNorm on keys only).

`two_phase=True` computes the same numbers the way an inference kernel would: at a block's first sublayer, all
S queries of the block attend to the completed blocks at once (phase 1, keeping the running max, the sum of
exponentials and the unnormalised weighted sum); each sublayer then merges its partial in with an online-softmax
update (phase 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ModelConfig
from ..taps import Tap
from .base import DepthMixer
from .full_attnres import PseudoQueries


@dataclass
class PhaseOne:
    """Softmax statistics of a block's S queries against its completed blocks."""

    logits: torch.Tensor  # [batch, tokens, S, completed]
    peak: torch.Tensor  # running max m            [batch, tokens, S, 1]
    exp_sum: torch.Tensor  # sum_k exp(logit_k - m)  [batch, tokens, S, 1]
    partial_out: torch.Tensor  # sum_k exp(logit_k - m) b_k  [batch, tokens, S, d]


@dataclass
class BlockState:
    # Completed blocks b_0 .. b_{n-1} and their logits against every mixer, re-stacked once per completed block
    # so that each sublayer only slices them.
    blocks: torch.Tensor | None = None  # [batch, tokens, n, d]
    block_logits: torch.Tensor | None = None  # [batch, tokens, n, L + 1]
    partial: torch.Tensor | None = None  # p [batch, tokens, d]
    queries: torch.Tensor | None = None  # w * g [mixers, d]
    phase_one: PhaseOne | None = None


def block_source_labels(completed: int, with_partial: bool) -> list[str]:
    return ["emb"] + [f"block{n}" for n in range(1, completed)] + (["partial"] if with_partial else [])


class BlockAttnResMixer(DepthMixer):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        total = cfg.n_sublayers
        self.two_phase = cfg.two_phase
        self.depth = PseudoQueries(total + 1, cfg.d_model)
        # where[l] = (block number n >= 1, position j >= 0 within the block, block first sublayer, block last)
        self.where: dict[int, tuple[int, int, int, int]] = {}
        for n, (first, last) in enumerate(cfg.block_bounds, start=1):
            for index in range(first, last + 1):
                self.where[index] = (n, index - first, first, last)
        self.alpha_taps = nn.ModuleList(
            Tap("alpha", l, block_source_labels(self.where[l][0], self.where[l][1] > 0))
            for l in range(1, total + 1)
        )
        self.alpha_taps.append(Tap("alpha", total + 1, block_source_labels(len(cfg.block_bounds) + 1, False)))
        self.partial_taps = nn.ModuleList(Tap("partial", l) for l in range(1, total + 1))

    def _complete_block(self, state: BlockState, value: torch.Tensor) -> None:
        value, logits = value.unsqueeze(-2), self.depth.logits(value, 1, state.queries).unsqueeze(-2)
        if state.blocks is None:
            state.blocks, state.block_logits = value, logits
        else:
            state.blocks = torch.cat([state.blocks, value], dim=-2)  # [batch, tokens, n + 1, d]
            state.block_logits = torch.cat([state.block_logits, logits], dim=-2)  # [batch, tokens, n + 1, L + 1]

    def start(self, embedding: torch.Tensor) -> BlockState:
        state = BlockState(queries=self.depth.effective())
        self._complete_block(state, embedding)
        return state

    def _block_logits(self, state: BlockState, index: int) -> torch.Tensor:
        return state.block_logits[..., index - 1]  # [batch, tokens, n]

    def _partial_logit(self, state: BlockState, index: int) -> torch.Tensor:
        return self.depth.logits(state.partial, index, state.queries[: index])  # [batch, tokens, 1]

    def _plain(self, state: BlockState, index: int, position: int) -> torch.Tensor:
        logits = self._block_logits(state, index)
        if position > 0:
            logits = torch.cat([logits, self._partial_logit(state, index)], dim=-1)
        alpha = self.alpha_taps[index - 1](torch.softmax(logits, dim=-1))  # [batch, tokens, sources]
        completed = state.blocks.shape[-2]
        mixed = (alpha[..., :completed].unsqueeze(-2) @ state.blocks).squeeze(-2)  # [batch, tokens, d]
        return mixed + alpha[..., completed:] * state.partial if position > 0 else mixed

    def _phase_one(self, state: BlockState, first: int, last: int) -> PhaseOne:
        logits = state.block_logits[..., first - 1 : last].transpose(-1, -2)  # [batch, tokens, S, n]
        peak = logits.amax(dim=-1, keepdim=True)
        weights = torch.exp(logits - peak)
        return PhaseOne(logits, peak, weights.sum(dim=-1, keepdim=True), weights @ state.blocks)

    def _two_phase(self, state: BlockState, index: int, position: int, first: int, last: int) -> torch.Tensor:
        if position == 0:
            state.phase_one = self._phase_one(state, first, last)
        one = state.phase_one
        logits, peak = one.logits[..., position, :], one.peak[..., position, :]  # [b, t, n], [b, t, 1]
        exp_sum, out = one.exp_sum[..., position, :], one.partial_out[..., position, :]
        if position == 0:
            alpha = torch.exp(logits - peak) / exp_sum
            self.alpha_taps[index - 1](alpha)
            return out / exp_sum
        # Online-softmax merge of the partial into the block statistics.
        partial_logit = self._partial_logit(state, index)  # [batch, tokens, 1]
        new_peak = torch.maximum(peak, partial_logit)
        rescale, partial_weight = torch.exp(peak - new_peak), torch.exp(partial_logit - new_peak)
        total = exp_sum * rescale + partial_weight
        alpha = torch.cat([torch.exp(logits - new_peak), partial_weight], dim=-1) / total
        self.alpha_taps[index - 1](alpha)
        return (out * rescale + partial_weight * state.partial) / total

    def sublayer_input(self, state: BlockState, index: int) -> torch.Tensor:
        _, position, first, last = self.where[index]
        if self.two_phase:
            return self._two_phase(state, index, position, first, last)
        return self._plain(state, index, position)

    def absorb(self, state: BlockState, index: int, output: torch.Tensor) -> None:
        _, position, _, last = self.where[index]
        state.partial = output if position == 0 else state.partial + output
        state.partial = self.partial_taps[index - 1](state.partial)
        if index == last:
            self._complete_block(state, state.partial)
            state.partial = None

    def finish(self, state: BlockState) -> torch.Tensor:
        final = len(self.alpha_taps)
        alpha = self.alpha_taps[final - 1](torch.softmax(self._block_logits(state, final), dim=-1))
        return (alpha.unsqueeze(-2) @ state.blocks).squeeze(-2)  # [batch, tokens, d]
