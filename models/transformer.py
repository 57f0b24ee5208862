"""The decoder-only language model shared by every variant; only `cfg.mixer` changes how sublayer inputs form."""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .layers import NORM_EPS, Sublayer, rotary_tables
from .mixers import MIXER_CLASSES


class DepthTransformer(nn.Module):
    """embedding -> L sublayers (attention, MLP, attention, ...) joined by a depth mixer -> final norm -> LM head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.sublayers = nn.ModuleList(Sublayer(cfg, l) for l in range(1, cfg.n_sublayers + 1))
        self.mixer = MIXER_CLASSES[cfg.mixer](cfg)
        self.final_norm = nn.RMSNorm(cfg.d_model, eps=NORM_EPS)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 style: N(0, 0.02), output projections scaled down by sqrt(L). Mixer parameters keep their own init.
        for sublayer in self.sublayers:
            for name, param in sublayer.body.named_parameters():
                std = 0.02 / math.sqrt(self.cfg.n_sublayers) if name.startswith("proj") else 0.02
                nn.init.normal_(param, std=std)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, tokens] (int64) -> logits [batch, tokens, vocab]."""
        if tokens.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        state = self.mixer.start(self.embed(tokens))
        for sublayer in self.sublayers:
            h = self.mixer.sublayer_input(state, sublayer.index)
            self.mixer.absorb(state, sublayer.index, sublayer(h, self.rope_cos, self.rope_sin))
        return self.head(self.final_norm(self.mixer.finish(state)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
