"""probe/: record depth attention, hidden-state RMS and gradients per token into runs on disk or summaries.

    Probe(model, ...)      context manager attaching hooks to a model's taps, through an Adapter, or through a
                           built-in adapter (depthscope.probe.adapters.for_model) for attn-res, hyper-connections
                           and Hugging Face decoders
    RunWriter(path, ...)   streams records into a run directory (manifest.json, Zarr v3, Parquet)
    open_run(path) -> Run  reads a run back lazily (the on-disk format is in SCHEMA.md)
    Summary                mergeable running statistics (update, merge, all_reduce)
    TrainingRecorder       a training callback(step, model, loss) that probes every k-th step into one run
    StepRecorder           a training callback writing every k-th step into its own run (the Evolution page)
    DepthscopeCallback     the same for the Hugging Face Trainer (imports transformers only when asked for)
"""
from __future__ import annotations

from depthscope.models import public_names

# name -> the module of this package that defines it; imported on first use, so that importing the package is
# cheap and pulls in no heavy dependency its caller does not use
_PUBLIC = {
    "Adapter": "adapter",
    "Input": "adapter",
    "Output": "adapter",
    "Site": "adapter",
    "Sublayer": "adapter",
    "Weights": "adapter",
    "find_logits": "adapter",
    "BatchRecord": "batch",
    "MemorySink": "batch",
    "ProbeError": "errors",
    "RunError": "errors",
    "DepthscopeCallback": "hf_callback",
    "hyper_step": "hyper_mixing",
    "start_streams": "hyper_mixing",
    "DEFAULT_CAPTURE": "layout",
    "Layout": "layout",
    "Probe": "probe",
    "Chunk": "reader",
    "LazyArray": "reader",
    "Run": "reader",
    "open_run": "reader",
    "DEFAULT_CHUNK_TOKENS": "store",
    "RunWriter": "store",
    "SCHEMA_VERSION": "store",
    "code_version": "store",
    "Summary": "summary",
    "describe_tokenizer": "token_text",
    "encode": "token_text",
    "text_of_ids": "token_text",
    "vocab_size": "token_text",
    "StepRecorder": "training",
    "TrainingRecorder": "training",
}

__getattr__, __dir__, __all__ = public_names(__name__, _PUBLIC)
