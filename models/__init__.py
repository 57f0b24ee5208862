"""The depth-routing model family: one transformer, swappable depth mixers, a small trainer and safe checkpoints.

Names are imported on first use (module __getattr__), so that `depthscope.models.vocabulary` and the other
torch-free modules can be imported on a machine without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "MIXERS": "vocabulary",
    "sublayer_label": "vocabulary",
    "ModelConfig": "config",
    "TAP_KINDS": "taps",
    "Tap": "taps",
    "iter_taps": "taps",
    "DepthTransformer": "transformer",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
