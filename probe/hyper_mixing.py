"""Hyper-Connections unrolled into the effective depth-mixing matrix M, one sublayer at a time, per token.

The one definition of M for HC / mHC, used by the hyper-connections adapter (which records row l of M as
sublayer l's weights over the sources emb, attn1, mlp1, ...) and by depthscope.analyses.mixing (M of depthscope's
own hyper mixer). With n streams, each stream k is a combination c[k, :] of the sources v_0 (embedding) .. v_L
(sublayer outputs); every stream starts as the embedding (c[k] = e_0). At sublayer l, with
  pre  [n]     the weight of each stream in the sublayer's input,
  R    [n, n]  the stream mixing (R[k, j]: stream k into new stream j),
  post [n]     the weight of f_l added to each stream,
row l of M is sum_k pre[k] c[k, :], and the streams become c'[j] = sum_k R[k, j] c[k] + post[j] e_l.
"""
from __future__ import annotations

import torch


def start_streams(batch: int, tokens: int, streams: int, n_sources: int, device=None,
                  dtype=torch.float64) -> torch.Tensor:
    """c [batch, tokens, streams, n_sources]: every stream holds the embedding (source 0)."""
    c = torch.zeros(batch, tokens, streams, n_sources, dtype=dtype, device=device)
    c[..., 0] = 1.0
    return c


def hyper_step(c: torch.Tensor, pre: torch.Tensor, mix: torch.Tensor, post: torch.Tensor,
               sublayer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row l of M [batch, tokens, n_sources], the streams after sublayer l) from the streams before it.

    c [b, t, n, S], pre [b, t, n], mix [b, t, n, n], post [b, t, n]; `sublayer` is l (its output is source l).
    """
    row = torch.einsum("btk,btkc->btc", pre.to(c.dtype), c)
    c = torch.einsum("btkj,btkc->btjc", mix.to(c.dtype), c)  # new stream j = sum_k R[k, j] stream k
    c[..., sublayer] += post.to(c.dtype)
    return row, c
