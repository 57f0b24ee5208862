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
from .adapter import Adapter, Input, Output, Site, Sublayer, Weights
from .batch import BatchRecord, MemorySink
from .errors import ProbeError, RunError
from .layout import Layout
from .probe import Probe
from .reader import Chunk, LazyArray, Run, open_run
from .store import SCHEMA_VERSION, RunWriter
from .summary import Summary
from .training import StepRecorder, TrainingRecorder

__all__ = [
    "Adapter", "BatchRecord", "Input", "Output", "Site", "Sublayer", "Weights", "Chunk", "LazyArray", "Layout", "MemorySink", "Probe", "ProbeError", "Run",
    "RunError", "RunWriter", "SCHEMA_VERSION", "StepRecorder", "Summary", "TrainingRecorder", "open_run",
]


def __getattr__(name: str):
    if name == "DepthscopeCallback":  # transformers is imported only by whoever uses it
        from .hf_callback import DepthscopeCallback

        return DepthscopeCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
