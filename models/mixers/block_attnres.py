"""Block Attention Residuals.

Sublayers are cut into blocks of S consecutive sublayers (`ModelConfig.block_bounds`). b_0 = embedding, always
its own source; b_n = sum of the outputs of block n; the partial sum p = sum of the outputs so far in the
current block. The first sublayer of a block sees [b_0 .. b_{n-1}] only; later ones see [b_0 .. b_{n-1}, p].
Logits and values follow Full AttnRes (zero-initialised pseudo-query per sublayer, RMSNorm on keys only).

`two_phase=False` computes each sublayer's softmax over all its sources and their weighted sum, as written.
`two_phase=True` computes the same numbers the way an inference kernel would: at a block's first sublayer, all
S queries of the block attend to the completed blocks at once (phase 1: softmax over the completed blocks, its
log-sum-exp and the weighted sum m_j, reading each completed block once per block instead of once per
sublayer); each sublayer then merges its partial in (phase 2). The merge is the online-softmax update written in
normalised form: the partial's share of the total weight is beta = sigmoid(logit_p - logsumexp(block logits)),
the completed blocks keep (1 - beta) of theirs, so h = m_j + beta (p - m_j).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..taps import Tap
from ..vocabulary import block_sources
from .base import DepthMixer, source_softmax
from .key_logits import key_logits
from .source_bank import SourceBank
from .tracking import tracked
from .full_attnres import PseudoQueries


@dataclass
class PhaseOne:
    """A block's S queries against its completed blocks, normalised over those blocks only."""

    # One entry per sublayer j of the block, split once rather than indexed per sublayer: under autograd every
    # index would send back a zero-padded gradient of the whole [batch, tokens, S, ...] tensor.
    weights: tuple[torch.Tensor, ...]  # softmax over completed blocks  S x [batch, tokens, n]
    log_norm: tuple[torch.Tensor, ...]  # logsumexp of the block logits  S x [batch, tokens, 1]
    mixed: tuple[torch.Tensor, ...]  # m_j = weights @ blocks          S x [batch, tokens, d]
    # m_j lives in a buffer of its own that nothing else reads (no autograd), so the merge may overwrite it.
    owned: bool = False


@dataclass
class BlockState:
    blocks: SourceBank  # completed blocks b_0 .. b_{n-1} [batch, tokens, n, d]
    # Logits of each completed block against the mixers that will read it (queries are static, so one matmul
    # per completed block serves all of them): block i against query rows reader_row[i] .. L.
    block_logits: list[torch.Tensor]  # each [batch, tokens, L + 1 - reader_row[i]]
    queries: torch.Tensor  # w * g [mixers, d]
    embedding: torch.Tensor  # b_0 as the model passed it (contiguous, where the bank's copy is strided)
    partial: torch.Tensor | None = None  # p [batch, tokens, d]
    phase_one: PhaseOne | None = None


class BlockAttnResMixer(DepthMixer):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        total = cfg.n_sublayers
        self.two_phase = cfg.two_phase
        self.n_sources_max = len(cfg.block_bounds) + 1
        self.depth = PseudoQueries(total + 1, cfg.d_model)
        # where[l] = (block number n >= 1, position j >= 0 within the block, block first sublayer, block last)
        self.where: dict[int, tuple[int, int, int, int]] = {}
        for n, (first, last) in enumerate(cfg.block_bounds, start=1):
            for index in range(first, last + 1):
                self.where[index] = (n, index - first, first, last)
        # first query row reading completed block i (0 = embedding): block i + 1's first sublayer, or the final mixer
        self.reader_row = [first - 1 for first, _ in cfg.block_bounds] + [total]
        self.alpha_taps = nn.ModuleList(
            Tap("alpha", l, block_sources(self.where[l][0], self.where[l][1] > 0))
            for l in range(1, total + 1)
        )
        self.alpha_taps.append(Tap("alpha", total + 1, block_sources(len(cfg.block_bounds) + 1, False)))
        self.partial_taps = nn.ModuleList(Tap("partial", l) for l in range(1, total + 1))

    def start(self, embedding: torch.Tensor) -> BlockState:
        blocks = SourceBank(self.n_sources_max, rows=len(self.alpha_taps))
        state = BlockState(blocks, [], self.depth.effective(), embedding)
        self._complete_block(state, embedding)
        return state

    def _complete_block(self, state: BlockState, value: torch.Tensor) -> None:
        row = self.reader_row[state.blocks.size]
        state.blocks.append(value)
        state.block_logits.append(key_logits(value, state.queries[row:]))

    def _logits(self, state: BlockState, first_row: int, stop_row: int) -> torch.Tensor:
        """Logits of every completed block against query rows first_row .. stop_row - 1 -> [b, t, rows, n]."""
        slices = [lg[..., first_row - row : stop_row - row] for lg, row in zip(state.block_logits, self.reader_row)]
        return torch.stack(slices, dim=-1)

    def _partial_logit(self, state: BlockState, index: int) -> torch.Tensor:
        return key_logits(state.partial, state.queries[index - 1 : index])  # [batch, tokens, 1]

    def _plain(self, state: BlockState, index: int, position: int) -> torch.Tensor:
        logits = self._logits(state, index - 1, index).squeeze(-2)  # [batch, tokens, n]
        if position > 0:
            logits = torch.cat([logits, self._partial_logit(state, index)], dim=-1)
        alpha = self.alpha_taps[index - 1](source_softmax(logits))  # [batch, tokens, sources]
        return self._mix(state, alpha, position)

    def _mix(self, state: BlockState, alpha: torch.Tensor, position: int) -> torch.Tensor:
        """h = sum over completed blocks alpha_n b_n (+ alpha_p p after a block's first sublayer)."""
        completed = state.blocks.size
        mixed = state.blocks.mix(alpha[..., :completed].unsqueeze(-2)).squeeze(-2)  # [batch, tokens, d]
        return torch.addcmul(mixed, alpha[..., completed:], state.partial) if position > 0 else mixed

    def _phase_one(self, state: BlockState, first: int, last: int) -> PhaseOne:
        logits = self._logits(state, first - 1, last)  # [batch, tokens, S, n]
        log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
        weights = source_softmax(logits, log_norm)
        if state.blocks.size == 1 and not torch.is_grad_enabled() and bool((weights == 1).all()):
            # Only the embedding is complete and its softmax weight is exactly 1: m_j is the embedding, uncopied.
            return PhaseOne(weights.unbind(-2), log_norm.unbind(-2), (state.embedding,) * (last - first + 1))
        mixed = state.blocks.mix_each(weights)  # S x [batch, tokens, d]
        owned = not mixed[0].requires_grad
        return PhaseOne(weights.unbind(-2), log_norm.unbind(-2), mixed, owned)

    def _two_phase(self, state: BlockState, index: int, position: int, first: int, last: int) -> torch.Tensor:
        if position == 0:
            state.phase_one = self._phase_one(state, first, last)
        one = state.phase_one
        weights, mixed = one.weights[position], one.mixed[position]  # [batch, tokens, n], [batch, tokens, d]
        # A hook on the alpha tap that returns other weights (an intervention) is honoured: h is then mixed from
        # the weights it returned, as the plain form would.
        tap = self.alpha_taps[index - 1]
        if position == 0:
            seen = tap(weights)
            return mixed if seen is weights else self._mix(state, seen, position)
        beta = torch.sigmoid(self._partial_logit(state, index) - one.log_norm[position])  # [b, t, 1]
        if tap.watched:  # h needs beta only; the full alpha is formed for whoever reads the tap
            alpha = torch.cat([weights * (1 - beta), beta], dim=-1)
            seen = tap(alpha)
            if seen is not alpha:
                return self._mix(state, seen, position)
        if one.owned and not tracked(state.partial, beta):
            return mixed.lerp_(state.partial, beta)
        return torch.lerp(mixed, state.partial, beta)

    def sublayer_input(self, state: BlockState, index: int) -> torch.Tensor:
        _, position, first, last = self.where[index]
        if self.two_phase:
            return self._two_phase(state, index, position, first, last)
        return self._plain(state, index, position)

    def absorb(self, state: BlockState, index: int, output: torch.Tensor) -> None:
        _, position, _, last = self.where[index]
        if position == 0:
            partial = output
        elif tracked(state.partial, output):
            partial = state.partial + output
        elif index == last:  # the completed block goes straight into its slot of the bank, which copies nothing
            partial = torch.add(state.partial, output, out=state.blocks.next_slot(output))
        elif position >= 2 and not self.partial_taps[index - 2].watched:
            # p is a sum made here at position 1 or later, and no hook saw it go through its tap: add in place
            partial = state.partial.add_(output)
        else:
            partial = state.partial + output
        state.partial = self.partial_taps[index - 1](partial)
        if index == last:
            self._complete_block(state, state.partial)
            state.partial = None

    def finish(self, state: BlockState) -> torch.Tensor:
        final = len(self.alpha_taps)
        logits = self._logits(state, final - 1, final).squeeze(-2)  # [batch, tokens, blocks]
        alpha = self.alpha_taps[final - 1](source_softmax(logits))
        out = state.blocks.mix(alpha.unsqueeze(-2)).squeeze(-2)  # [batch, tokens, d]
        state.blocks.close()
        return out
