"""Hyper-Connections: n parallel residual streams mixed by learned static + input-dependent matrices.

Streams H [batch, tokens, n, d] start as n copies of the embedding. For sublayer l:
  pre  a [n]      h_l = sum_k a_k H_k                          (width connection: the sublayer's input)
  mix  R [n, n]   H'_j = sum_k R[k, j] H_k + post_j * f_l(h_l)  (residual mixing + depth connection)
Each of a, R, post = static (learned) + dynamic (tanh of a projection of RMSNorm(H), scaled by a learned scalar
that starts small). Static init: a = one-hot on stream l mod n, R = identity, post = 1: a standard residual.
The final output is the sum of the streams.

With `mhc=True` (manifold-constrained HC): a = sigmoid(.), post = 2 sigmoid(.) and R = Sinkhorn(exp(.)) so
every stream-mixing matrix is doubly stochastic (rows and columns sum to 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..layers import unit_rms
from ..taps import Tap
from .base import DepthMixer


def sinkhorn(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """Doubly stochastic matrix from logits [..., n, n]: exp, then alternate row and column normalisation.

    Exp-space is several times faster than log-space here. The max is subtracted first so exp cannot overflow,
    and logits are floored 60 below it so no row or column underflows to all zeros (which would divide by 0).
    """
    peak = logits.amax(dim=(-1, -2), keepdim=True)
    p = torch.exp(torch.maximum(logits - peak, torch.full_like(peak, -60.0)))
    for _ in range(iters):
        p = p / p.sum(dim=-1, keepdim=True)
        p = p / p.sum(dim=-2, keepdim=True)
    return p


class HyperConnection(nn.Module):
    """The static and dynamic parameters of one sublayer's width, mixing and depth connections."""

    def __init__(self, d_model: int, streams: int, index: int, mhc: bool, sinkhorn_iters: int):
        super().__init__()
        self.streams, self.mhc, self.sinkhorn_iters = streams, mhc, sinkhorn_iters
        one_hot = torch.nn.functional.one_hot(torch.tensor(index % streams), streams).float()
        if mhc:
            # Near plain HC's init: sigmoid(pre) ~ one-hot, 2 sigmoid(post) = 1, Sinkhorn(exp(3 I)) strongly diagonal
            # (0.87 on the diagonal for 4 streams: some mixing from the start, so the mixing gets gradients).
            self.pre = nn.Parameter(torch.where(one_hot > 0, 4.0, -4.0))
            self.post = nn.Parameter(torch.zeros(streams))  # 2 sigmoid(0) = 1
            self.mix = nn.Parameter(3.0 * torch.eye(streams))
        else:
            self.pre = nn.Parameter(one_hot)
            self.post = nn.Parameter(torch.ones(streams))
            self.mix = nn.Parameter(torch.eye(streams))
        self.pre_proj = nn.Linear(d_model, 1, bias=False)
        self.post_proj = nn.Linear(d_model, 1, bias=False)
        self.mix_proj = nn.Linear(d_model, streams, bias=False)
        for proj in (self.pre_proj, self.post_proj, self.mix_proj):
            nn.init.zeros_(proj.weight)
        self.dynamic_scale = nn.Parameter(torch.full((3,), 0.01))

    def forward(self, streams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """streams [batch, tokens, n, d] -> pre [b, t, n], mix [b, t, n, n], post [b, t, n]."""
        normed = unit_rms(streams)
        pre = self.pre + self.dynamic_scale[0] * torch.tanh(self.pre_proj(normed).squeeze(-1))
        post = self.post + self.dynamic_scale[1] * torch.tanh(self.post_proj(normed).squeeze(-1))
        mix = self.mix + self.dynamic_scale[2] * torch.tanh(self.mix_proj(normed))  # [b, t, n, n]
        if self.mhc:
            pre, post, mix = torch.sigmoid(pre), 2.0 * torch.sigmoid(post), sinkhorn(mix, self.sinkhorn_iters)
        return pre, mix, post


@dataclass
class HyperState:
    streams: torch.Tensor  # [batch, tokens, n, d]
    pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (mix, post) of the sublayer in flight


class HyperMixer(DepthMixer):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n, total = cfg.hyper_streams, cfg.n_sublayers
        labels = [f"stream{k}" for k in range(1, n + 1)]
        self.n_streams = n
        self.connections = nn.ModuleList(
            HyperConnection(cfg.d_model, n, l - 1, cfg.mhc, cfg.sinkhorn_iters) for l in range(1, total + 1)
        )
        self.alpha_taps = nn.ModuleList(Tap("alpha", l, labels) for l in range(1, total + 1))
        self.mix_taps = nn.ModuleList(Tap("mix", l) for l in range(1, total + 1))
        self.post_taps = nn.ModuleList(Tap("post", l) for l in range(1, total + 1))
        self.stream_taps = nn.ModuleList(Tap("streams", l) for l in range(1, total + 1))

    def start(self, embedding: torch.Tensor) -> HyperState:
        return HyperState(streams=embedding.unsqueeze(-2).expand(-1, -1, self.n_streams, -1))

    def sublayer_input(self, state: HyperState, index: int) -> torch.Tensor:
        pre, mix, post = self.connections[index - 1](state.streams)
        pre = self.alpha_taps[index - 1](pre)
        state.pending = (self.mix_taps[index - 1](mix), self.post_taps[index - 1](post))
        return (pre.unsqueeze(-2) @ state.streams).squeeze(-2)  # [batch, tokens, d]

    def absorb(self, state: HyperState, index: int, output: torch.Tensor) -> None:
        mix, post = state.pending
        # H'_j = sum_k R[k, j] H_k + post_j f_l: [b, t, n, n]^T @ [b, t, n, d] -> [b, t, n, d]
        mixed = mix.transpose(-1, -2) @ state.streams + post.unsqueeze(-1) * output.unsqueeze(-2)
        state.streams, state.pending = self.stream_taps[index - 1](mixed), None

    def finish(self, state: HyperState) -> torch.Tensor:
        return state.streams.sum(dim=-2)
