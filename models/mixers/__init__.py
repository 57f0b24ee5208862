"""Depth mixers: how each sublayer's input is formed. One file per method."""
from .base import DepthMixer, weighted_sum
from .block_attnres import BlockAttnResMixer
from .denseformer import DenseFormerMixer
from .full_attnres import FullAttnResMixer
from .hyper import HyperMixer, sinkhorn
from .residual import ResidualMixer

MIXER_CLASSES = {
    "residual": ResidualMixer,
    "full_attnres": FullAttnResMixer,
    "block_attnres": BlockAttnResMixer,
    "denseformer": DenseFormerMixer,
    "hyper": HyperMixer,
}

__all__ = ["DepthMixer", "weighted_sum", "sinkhorn", "MIXER_CLASSES", *[c.__name__ for c in MIXER_CLASSES.values()]]
