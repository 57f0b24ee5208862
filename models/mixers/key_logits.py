"""AttnRes logits w . RMSNorm(v) for a set of queries, fused so the normalised keys are never materialised.

logit_m = (v . w_m) / r with r = sqrt(mean(v^2) + eps) (the key RMSNorm's gain is folded into w, see
`PseudoQueries.effective`). Written out, the backward pass is
    dL/dv = (G / r) @ W - (sum_m G_m logit_m) / (d r^2) * v,   dL/dW = (G / r)^T @ v,
two reads of v and one write, where autograd through rms_norm + matmul would write the normalised copy forward
and several [batch, tokens, d] temporaries backward.
"""
from __future__ import annotations

import math

import torch

from ..layers import NORM_EPS


class _KeyLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        # values [batch, tokens, d], queries [m, d] -> logits [batch, tokens, m]
        d = values.shape[-1]
        rms = torch.sqrt(torch.linalg.vector_norm(values, dim=-1, keepdim=True).square().div(d).add(NORM_EPS))
        logits = (values @ queries.T).div_(rms)
        ctx.save_for_backward(values, queries, rms, logits)
        return logits

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        values, queries, rms, logits = ctx.saved_tensors
        scaled = grad / rms  # [batch, tokens, m]
        values_grad = queries_grad = None
        if ctx.needs_input_grad[0]:
            along = (grad * logits).sum(-1, keepdim=True) / (rms.square() * values.shape[-1])  # [batch, tokens, 1]
            values_grad = torch.addcmul(scaled @ queries, along, values, value=-1)
        if ctx.needs_input_grad[1]:
            queries_grad = scaled.flatten(0, -2).T @ values.flatten(0, -2)  # [m, tokens] @ [tokens, d]
        return values_grad, queries_grad


def key_logits(values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(values / RMS(values)) @ queries.T without forming the normalised values: [batch, tokens, m]."""
    return _KeyLogits.apply(values, queries)
