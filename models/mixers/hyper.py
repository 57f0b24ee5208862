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
from ..taps import Tap
from ..vocabulary import stream_sources
from .base import DepthMixer
from .key_logits import key_logits


def sinkhorn(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """Doubly stochastic matrix from logits [..., n, n]: exp, then alternate row and column normalisation.

    Exp-space is several times faster than log-space here. The max is subtracted first so exp cannot overflow,
    and logits are floored 60 below it so no row or column underflows to all zeros (which would divide by 0).
    The iterations run on a [n, n, ...] copy: with the many small matrices along the last axis, each row or
    column sum is an add of contiguous vectors instead of a reduction over a length-n axis (about 4x faster).
    """
    peak = logits.amax(dim=(-1, -2), keepdim=True)
    p = torch.exp(torch.maximum(logits - peak, torch.full_like(peak, -60.0)))
    batch_dims = range(p.dim() - 2)
    p = p.permute(-2, -1, *batch_dims).contiguous()  # [n (rows), n (columns), ...]
    for _ in range(iters):
        p = p / p.sum(dim=1, keepdim=True)
        p = p / p.sum(dim=0, keepdim=True)
    return p.permute(*(d + 2 for d in batch_dims), 0, 1).contiguous()  # [..., n, n]


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
        # The three projections of RMSNorm(H) in one fused pass: the normalised streams are never materialised.
        weight = torch.cat([self.pre_proj.weight, self.post_proj.weight, self.mix_proj.weight])  # [2 + n, d]
        projected = torch.tanh(key_logits(streams, weight))  # [batch, tokens, n, 2 + n]
        pre = self.pre + self.dynamic_scale[0] * projected[..., 0]
        post = self.post + self.dynamic_scale[1] * projected[..., 1]
        mix = self.mix + self.dynamic_scale[2] * projected[..., 2:]  # [b, t, n, n]
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
        labels = stream_sources(n)
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
        mixed = torch.addcmul(mix.transpose(-1, -2) @ state.streams, post.unsqueeze(-1), output.unsqueeze(-2))
        state.streams, state.pending = self.stream_taps[index - 1](mixed), None

    def finish(self, state: HyperState) -> torch.Tensor:
        return state.streams.sum(dim=-2)
