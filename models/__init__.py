"""The depth-routing model family: one transformer, swappable depth mixers, a small trainer and safe checkpoints.

Names are imported on first use (module __getattr__), so that `depthscope.models.vocabulary` and the other
torch-free modules can be imported on a machine without torch.
"""
from __future__ import annotations

from .exports import public_names

# name -> the module of this package that defines it; imported on first use, so that importing the package is
# cheap and pulls in no heavy dependency its caller does not use
_PUBLIC = {
    "public_names": "exports",
    "statistic_label": "vocabulary",
    "STATISTIC_LABELS": "vocabulary",
    "__version__": "version",
    "atomic_write": "atomic",
    "json_safe": "atomic",
    "CheckpointError": "checkpoint",
    "META_FILE": "checkpoint",
    "WEIGHTS_FILE": "checkpoint",
    "find_checkpoints": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_checkpoint_info": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ModelConfig": "config",
    "option": "config",
    "ByteTokenizer": "data",
    "CORPORA": "data",
    "Corpus": "data",
    "CorpusError": "data",
    "load_corpus": "data",
    "TAP_KINDS": "taps",
    "Tap": "taps",
    "iter_taps": "taps",
    "TrainConfig": "trainer",
    "steps_for_budget": "trainer",
    "train": "trainer",
    "warmup_for": "trainer",
    "DepthTransformer": "transformer",
    "ATTN": "vocabulary",
    "ATTNRES": "vocabulary",
    "BASELINE": "vocabulary",
    "EMBEDDING": "vocabulary",
    "FINAL": "vocabulary",
    "MIXERS": "vocabulary",
    "MIXER_KINDS": "vocabulary",
    "MLP": "vocabulary",
    "MixerKind": "vocabulary",
    "PARTIAL": "vocabulary",
    "SHOWN_TOKEN_STATISTICS": "vocabulary",
    "TOKEN_STATISTICS": "vocabulary",
    "axis_label": "vocabulary",
    "block_number": "vocabulary",
    "block_sources": "vocabulary",
    "full_sources": "vocabulary",
    "generic_sources": "vocabulary",
    "kind_named": "vocabulary",
    "kind_of_model": "vocabulary",
    "parse_source": "vocabulary",
    "source_sublayer": "vocabulary",
    "sublayer_kind": "vocabulary",
    "sublayer_kinds": "vocabulary",
    "sublayer_label": "vocabulary",
    "token_label": "vocabulary",
    "token_labels": "vocabulary",
    "unit_of_labels": "vocabulary",
}

__getattr__, __dir__, __all__ = public_names(__name__, _PUBLIC)
