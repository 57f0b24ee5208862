"""The pieces every variant shares: RMSNorm pre-norm sublayers, causal attention with rotary positions, MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .taps import Tap
from .vocabulary import ATTN, sublayer_kind, sublayer_label

NORM_EPS = 1e-6


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without a gain: x / RMS(x) over the last axis."""
    return F.rms_norm(x, (x.shape[-1],), eps=NORM_EPS)


def rotary_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for rotary position embeddings, each [max_seq_len, head_dim]."""
    head_dim = cfg.d_model // cfg.n_heads
    inv_freq = 1.0 / (cfg.rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64), inv_freq)  # [T, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [T, head_dim]
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [batch, heads, tokens, head_dim]; cos, sin: [tokens, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        q, k, v = self.qkv(x).split(d_model, dim=-1)
        # [batch, tokens, d_model] -> [batch, heads, tokens, head_dim]
        q, k, v = (t.view(batch, tokens, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rotary(q, cos[:tokens], sin[:tokens]), apply_rotary(k, cos[:tokens], sin[:tokens])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(batch, tokens, d_model)  # [batch, tokens, d_model]
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.up(x)))


class Sublayer(nn.Module):
    """f_l(h) = body(RMSNorm(h)); taps expose the input h_l and the output f_l."""

    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.index = index  # 1-based; odd = attention, even = MLP
        self.label = sublayer_label(index)
        self.kind = sublayer_kind(self.label)
        self.norm = nn.RMSNorm(cfg.d_model, eps=NORM_EPS)
        self.body = CausalSelfAttention(cfg) if self.kind == ATTN else MLP(cfg)
        self.tap_input = Tap("input", index)
        self.tap_output = Tap("output", index)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = self.tap_input(h)
        return self.tap_output(self.body(self.norm(h), cos, sin))
