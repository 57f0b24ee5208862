"""AttnRes logits w . RMSNorm(v) for a set of queries, fused so the normalised keys are never materialised.

logit_m = (v . w_m) * s with s = 1 / sqrt(mean(v^2) + eps) (the key RMSNorm's gain is folded into w, see
`PseudoQueries.effective`). Written out, the backward pass is
    dL/dv = (G s) @ W - s^2 (sum_m G_m logit_m) / d * v,   dL/dW = (G s)^T @ v,
two reads of v and one write, where autograd through rms_norm + matmul would write the normalised copy forward
and several [batch, tokens, d] temporaries backward.
"""
from __future__ import annotations

import torch

from ..layers import NORM_EPS
from .tracking import tracked


def _inverse_rms_and_logits(values: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # values [batch, tokens, d], queries [m, d] -> s [batch, tokens, 1], logits [batch, tokens, m]
    norm = torch.linalg.vector_norm(values, dim=-1, keepdim=True)
    # s = (|v|^2 / d + eps) ** -1/2 in two small ops: the mixers call this once per sublayer
    inverse_rms = torch.addcmul(values.new_tensor(NORM_EPS), norm, norm, value=1 / values.shape[-1]).rsqrt_()
    return inverse_rms, (values @ queries.T).mul_(inverse_rms)


class _KeyLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        inverse_rms, logits = _inverse_rms_and_logits(values, queries)
        ctx.save_for_backward(values, queries, inverse_rms, logits)
        return logits

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        values, queries, inverse_rms, logits = ctx.saved_tensors
        scaled = grad * inverse_rms  # [batch, tokens, m]
        values_grad = queries_grad = None
        if ctx.needs_input_grad[0]:
            along = (grad * logits).sum(-1, keepdim=True) * inverse_rms.square() / values.shape[-1]  # [b, t, 1]
            values_grad = torch.addcmul(scaled @ queries, along, values, value=-1)
        if ctx.needs_input_grad[1]:
            queries_grad = scaled.flatten(0, -2).T @ values.flatten(0, -2)  # [m, tokens] @ [tokens, d]
        return values_grad, queries_grad


def key_logits(values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(values / RMS(values)) @ queries.T without forming the normalised values: [batch, tokens, m]."""
    if tracked(values, queries):
        return _KeyLogits.apply(values, queries)
    return _inverse_rms_and_logits(values, queries)[1]
