"""The PyPI package hyper-connections (HC and mHC). Filled in below."""
from __future__ import annotations

from torch import nn


def detect(model: nn.Module):
    return None
