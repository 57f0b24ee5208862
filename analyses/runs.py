"""What every analysis reads: a run on disk (`depthscope.probe.open_run`) or the same arrays held in memory.

`as_run(x)` accepts a run directory (str or Path), an opened `probe.Run`, or a `MemoryRun`. A MemoryRun wraps
plain arrays laid out exactly like a run's (alpha [tokens, sublayers, max_sources] with NaN beyond each row's
sources; *_rms [tokens, sublayers]; token/document/position/loss [tokens]) so that hand-made weight tensors,
notebook experiments and the dashboard go through the same code as recorded runs.

Analyses only use: path, source_labels, sublayers, sublayer_labels, n_tokens, captured, model (dict with
"kind" and "config"), mixer_kind (what the mixer kind allows: `mixer_kind(run)`), grad_norms, manifest, and
iter_chunks(names, chunk_tokens).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from depthscope.models import (
    MixerKind,
    axis_label,
    kind_of_model,
    sublayer_kinds,  # noqa: F401 - re-exported: analyses' import of it
)
from depthscope.probe import Chunk, Run, open_run

from .errors import AnalysisError

DEFAULT_CHUNK_TOKENS = 8192
PER_SUBLAYER = ("input_rms", "output_rms", "residual_rms", "grad_rms")
PER_TOKEN = ("token", "document", "position", "step", "loss")


class MemoryRun:
    """Run-shaped arrays in memory (see the module docstring).

    alpha: [tokens, sublayers, sources] weights; a row's entries beyond len(source_labels[i]) must be NaN or
    are ignored. source_labels: per position of the sublayer axis. sublayers: 1-based ids (default 1..n).
    kind: the mixer (one of models.vocabulary.MIXERS, or None: a foreign model whose unit of distance its labels
    imply); config: the model config dict when known. Any of input_rms, output_rms, residual_rms, grad_rms
    [tokens, sublayers] and token, document, position, step, loss [tokens] may be given. grad_norms: a DataFrame like Run.grad_norms.
    """

    def __init__(self, *, source_labels: Sequence[Sequence[str]] | None = None, alpha: Any = None,
                 sublayers: Sequence[int] | None = None, sublayer_labels: Sequence[str] | None = None,
                 kind: str | None = None, config: dict | None = None, grad_norms: pd.DataFrame | None = None,
                 name: str = "<memory run>", **arrays: Any):
        unknown = set(arrays) - set(PER_SUBLAYER) - set(PER_TOKEN)
        if unknown:
            raise AnalysisError(name, f"unknown arrays {sorted(unknown)}")
        self.path = Path(name)
        self.arrays: dict[str, np.ndarray] = {}
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.ndim != 3:
                raise AnalysisError(name, f"alpha must be [tokens, sublayers, sources], got shape {alpha.shape}")
            self.arrays["alpha"] = alpha
        for key, value in arrays.items():
            if value is not None:
                self.arrays[key] = np.asarray(value)
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) > 1:
            raise AnalysisError(name, f"arrays disagree on the number of tokens: {sizes}")
        self.n_tokens = next(iter(sizes.values()), 0)
        slots = None
        if alpha is not None:
            slots = alpha.shape[1]
        else:
            for key in PER_SUBLAYER:
                if key in self.arrays:
                    slots = self.arrays[key].shape[1]
                    break
        if source_labels is None:
            if alpha is not None:
                raise AnalysisError(name, "alpha needs source_labels (one list of labels per sublayer)")
            source_labels = [[] for _ in range(slots or 0)]
        self.source_labels = [list(map(str, s)) for s in source_labels]
        slots = len(self.source_labels) if slots is None else slots
        if len(self.source_labels) != slots:
            raise AnalysisError(name, f"{len(self.source_labels)} lists of source labels for {slots} sublayers")
        if alpha is not None and max((len(s) for s in self.source_labels), default=0) > alpha.shape[2]:
            raise AnalysisError(name, f"more source labels than alpha's {alpha.shape[2]} source columns")
        self.sublayers = list(sublayers) if sublayers is not None else list(range(1, slots + 1))
        if len(self.sublayers) != slots:
            raise AnalysisError(name, f"{len(self.sublayers)} sublayer ids for {slots} sublayers")
        if sublayer_labels is None:
            n = (config or {}).get("n_layers")
            n_sublayers = 2 * n if n else max(self.sublayers, default=0)
            sublayer_labels = [axis_label(l, n_sublayers) for l in self.sublayers]
        self.sublayer_labels = list(sublayer_labels)
        self.model = {"kind": kind, "config": config}
        self.mixer_kind = kind_of_model(self.model, self.source_labels)
        self.manifest = {"model": self.model}
        self._grad_norms = grad_norms
        self.captured = tuple(self.arrays)
        self.chunk_tokens = DEFAULT_CHUNK_TOKENS

    @property
    def grad_norms(self) -> pd.DataFrame:
        if self._grad_norms is None:
            return pd.DataFrame({"step": [], "sublayer": [], "label": [], "grad_norm": [], "n_params": []})
        return self._grad_norms

    def iter_chunks(self, names: Sequence[str] | None = None, chunk_tokens: int | None = None,
                    start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        names = list(self.arrays) if names is None else list(names)
        for name in names:
            if name not in self.arrays:
                raise AnalysisError(self.path, f"this run did not capture {name!r} (it holds {list(self.arrays)})")
        size = chunk_tokens or self.chunk_tokens
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        for a in range(start, stop, size):
            b = min(a + size, stop)
            yield Chunk(a, b, {name: self.arrays[name][a:b] for name in names})

    def __repr__(self) -> str:
        return f"MemoryRun({str(self.path)!r}, tokens={self.n_tokens}, arrays={list(self.arrays)})"


RunLike = Any  # Run | MemoryRun | str | Path


def as_run(run: RunLike):
    """An opened run: paths are opened with depthscope.probe.open_run (RunError names a bad file)."""
    if isinstance(run, (str, Path)):
        return open_run(run)
    if isinstance(run, (Run, MemoryRun)) or hasattr(run, "iter_chunks"):
        return run
    raise TypeError(f"expected a run directory, a probe.Run or a MemoryRun, got {type(run).__name__}")


def run_name(run) -> str:
    return str(getattr(run, "path", "<run>"))


def model_kind(run) -> str | None:
    model = getattr(run, "model", None) or {}
    return model.get("kind")


def model_config(run) -> dict | None:
    model = getattr(run, "model", None) or {}
    return model.get("config")


def require(run, names: Sequence[str], what: str) -> None:
    """A clear error when the run lacks an array a statistic needs, or holds no tokens."""
    missing = [n for n in names if n not in run.captured]
    if missing:
        raise AnalysisError(run_name(run), f"{what} needs {missing}, which this run did not capture "
                                           f"(it holds {list(run.captured) or 'nothing'})")
    if run.n_tokens == 0:
        raise AnalysisError(run_name(run), f"{what}: the run holds no tokens")


def chunk_size(run, chunk_tokens: int | None) -> int:
    if chunk_tokens is not None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        return int(chunk_tokens)
    return int(getattr(run, "chunk_tokens", DEFAULT_CHUNK_TOKENS) or DEFAULT_CHUNK_TOKENS)


def mixer_kind(run) -> MixerKind:
    """What the run's mixer kind allows (models.vocabulary.MixerKind: non-negative weights, unit of distance,
    causal check, ...): as its manifest wrote it, else from the vocabulary's table by mixer name, else a foreign
    model's (the unit its source labels imply)."""
    known = getattr(run, "mixer_kind", None)
    if isinstance(known, MixerKind):
        return known
    return kind_of_model(getattr(run, "model", None), getattr(run, "source_labels", ()))


def iter_chunks(run, names: Sequence[str], chunk_tokens: int | None = None, prefetch: bool = True) -> Iterator[Chunk]:
    """run.iter_chunks(names, chunk_tokens), reading the next chunk in a background thread while the caller
    works on the current one (decompression releases the GIL). At most two chunks are held at a time."""
    size = chunk_size(run, chunk_tokens)
    source = run.iter_chunks(list(names), size)
    if not prefetch or run.n_tokens <= size:
        yield from source
        return
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in source:
                while not stop.is_set():
                    try:
                        box.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            box.put(err)

    thread = threading.Thread(target=reader, name="depthscope-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
