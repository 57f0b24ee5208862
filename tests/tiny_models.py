"""The one tiny model of the test suite: a DepthTransformer small enough to run in milliseconds, with its depth
pseudo-queries drawn from N(0, query_scale) so that routing is not uniform (trained-from-zero queries give every
source the same weight, which hides the code paths of sinks, jumps and non-uniform routing).

    from tiny_models import tiny_model      # tests/ is on sys.path (pytest puts the rootdir conftest's folder there)
    model = tiny_model("full_attnres", seed=1, max_seq_len=32)
"""
from __future__ import annotations

TINY = dict(n_layers=2, d_model=16, n_heads=2, max_seq_len=16, n_blocks=2)


def tiny_config(mixer: str = "block_attnres", **overrides):
    """The tiny ModelConfig; keyword arguments override its fields."""
    from depthscope.models import ModelConfig

    return ModelConfig(**{**TINY, "mixer": mixer, **overrides})


def tiny_model(mixer: str = "block_attnres", seed: int = 0, query_scale: float = 1.0, **overrides):
    """A seeded tiny DepthTransformer; `query_scale` 0 keeps the pseudo-queries at their zero init."""
    import torch

    from depthscope.models import DepthTransformer

    torch.manual_seed(seed)
    model = DepthTransformer(tiny_config(mixer, **overrides))
    if query_scale:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "depth.queries" in name:
                    param.normal_(0, query_scale)
    return model
