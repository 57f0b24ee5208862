"""The depth-routing model family: one transformer, swappable depth mixers, a small trainer and safe checkpoints."""
from .config import MIXERS, ModelConfig, sublayer_label
from .taps import TAP_KINDS, Tap, iter_taps
from .transformer import DepthTransformer

__all__ = ["MIXERS", "ModelConfig", "sublayer_label", "TAP_KINDS", "Tap", "iter_taps", "DepthTransformer"]
