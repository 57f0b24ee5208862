"""Whether autograd records an operation on some tensors. Where it does not, the mixers take faster roads:
embedding-bag lookups, writes in place, no autograd Function."""
from __future__ import annotations

import torch


def tracked(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
