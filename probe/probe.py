"""The Probe: a context manager that hooks a model's taps and records what flows through them, per token.

    with Probe(model) as probe:                    # in memory: probe.records, probe.arrays()
        model(tokens)

    with Probe(model, out="runs/x") as probe:      # streamed to a run directory (see SCHEMA.md)
        for window in windows:
            logits = model(window.inputs)
            probe.commit(targets=window.targets, document=window.doc_ids, position=window.positions)

    with Probe(model, summary=True, grads=True, every=10) as probe:   # running summaries during training
        for step in range(n):
            loss = lm_loss(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
            probe.commit(step=step)
        probe.summary.to_frames()

Batches. A forward of the probed model (the module given to Probe) starts a batch. The batch is handed to
the sinks by `commit()` (which adds loss, document, position, step), or automatically when the next forward
starts, or at exit. Backward passes in between add activation gradients (`grads=True`): dLoss/dh_l arrives
through `Tensor.register_hook`, placed by the forward hook of each "input" tap, and parameter-gradient norms
through post-accumulate-grad hooks on each sublayer's parameters (read when the gradient is complete, so a
training loop may zero gradients before calling commit).

Cost. Each hook does a flag test and at most one reduction: alpha taps keep a reference to the weights
(copied once per batch into the padded [batch, tokens, sublayers, sources] buffer at commit), RMS taps keep
only the [batch, tokens] norm. Nothing moves to the CPU inside a hook.

Recomputation. Under torch.utils.checkpoint a forward re-runs during backward; every tap records at most once
per batch (the first value wins and each gradient hook is placed once), and a forward of the probed module
that runs inside backward does not start a new batch, so nothing is counted twice.

torch.compile. Probing a compiled module raises ProbeError (probe the module before compiling it, or the
original through `compiled._orig_mod`); compiling a module while it is being probed raises ProbeError at its
first forward, through hooks that torch.compile cannot trace.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .adapter import Adapter, find_logits
from .batch import BatchRecord, MemorySink, Sink
from .errors import ProbeError
from .layout import (
    DEFAULT_CAPTURE,
    RMS_QUANTITIES,
    Layout,
    TapSpec,
    build_layout,
    default_label,
    tap_parameter_groups,
    tap_specs,
)

_vector_norm = torch.linalg.vector_norm
_float32 = torch.float32
_current_graph_task = getattr(torch._C, "_current_graph_task_id", lambda: -1)

COMPILE_MESSAGE = (
    "depthscope.probe cannot record inside torch.compile: its hooks keep Python-side state that a compiled graph "
    "cannot hold. Record with the uncompiled model (for a compiled one, probe and call `compiled._orig_mod`)."
)


def _is_compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover - old torch
        return False


class Probe:
    """Record depth attention, hidden-state RMS and gradients of `model` while the context is open.

    model: any nn.Module built from depthscope taps, or probed through `adapter` (by default the built-in adapter
        `depthscope.probe.adapters.for_model(model)` finds for attn-res, hyper-connections and HF decoders).
    out: a run directory (str/Path) or a RunWriter: capture every recorded token to disk.
    summary: True or a Summary: keep mergeable running statistics (`probe.summary`).
    memory: keep records in memory (`probe.records`); default True when neither out nor summary is given.
    capture: tap kinds to record, some of ("alpha", "input", "output", "residual").
    grads: also record per-token RMS of dLoss/dh_l and per-sublayer parameter-gradient norms.
    sublayers: 1-based sublayer ids to record (L + 1 is the final mixer); default all.
    positions: (start, stop) sequence positions to record; default all.
    dtype: dtype of stored depth-attention weights (float16 unless only summaries are kept: float32).
    every: record one batch in `every` (batch 0, every, 2 * every, ...); the others pass through untouched.
    meta: extra manifest fields for a run on disk (seed, corpus, tokenizer, anything JSON-able).
    chunk_tokens: tokens per chunk on disk (when `out` is a path).
    sinks: further sinks (objects with begin/write/close).
    training_only: ignore forwards made while the model is in eval mode (e.g. a trainer's evaluations).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        out: str | Path | Sink | None = None,
        summary: Any = False,
        memory: bool | None = None,
        capture: Sequence[str] = DEFAULT_CAPTURE,
        grads: bool = False,
        sublayers: Sequence[int] | None = None,
        positions: tuple[int, int] | None = None,
        dtype: torch.dtype | None = None,
        every: int = 1,
        adapter: Adapter | None = None,
        meta: dict | None = None,
        chunk_tokens: int | None = None,
        sinks: Sequence[Sink] = (),
        training_only: bool = False,
    ):
        if every < 1:
            raise ProbeError(f"every must be >= 1, got {every}")
        if _is_compiled(model):
            raise ProbeError(COMPILE_MESSAGE)
        self.model = model
        self.adapter = adapter
        self.capture = tuple(capture)
        self.grads = bool(grads)
        self.every = int(every)
        self.training_only = bool(training_only)
        self.meta = dict(meta or {})
        self._sublayers = None if sublayers is None else list(sublayers)
        self._positions = positions

        self.writer = None
        if out is not None:
            if isinstance(out, (str, Path)):
                from .store import RunWriter

                out = RunWriter(out, **({} if chunk_tokens is None else {"chunk_tokens": chunk_tokens}))
            self.writer = out
        self.summary = None
        if summary is not False and summary is not None:
            if summary is True:
                from .summary import Summary

                summary = Summary()
            self.summary = summary
        if self.writer is not None and self.summary is not None and getattr(self.writer, "summary", 1) is None:
            self.writer.summary = self.summary  # saved into the run directory at close
        self.memory: MemorySink | None = None
        if memory or (memory is None and self.writer is None and self.summary is None and not sinks):
            self.memory = MemorySink()
        self.sinks: list[Sink] = [s for s in (self.writer, self.summary, self.memory) if s is not None]
        self.sinks += list(sinks)
        if dtype is None:
            dtype = torch.float32 if (self.summary is not None and len(self.sinks) == 1) else torch.float16
        self.dtype = dtype
        self.layout: Layout | None = None
        self.batches_recorded = 0
        self._attached = False

    # ------------------------------------------------------------------------------------------------ set-up

    @property
    def records(self) -> list[BatchRecord]:
        if self.memory is None:
            raise ProbeError("this probe keeps no records in memory (pass memory=True)")
        return self.memory.records

    def arrays(self) -> dict[str, np.ndarray]:
        """In-memory records concatenated over tokens (the arrays a run on disk would hold)."""
        if self.memory is None:
            raise ProbeError("this probe keeps no records in memory (pass memory=True)")
        return self.memory.arrays()

    def _discover(self) -> tuple[list[TapSpec], dict[int, list[nn.Parameter]], Any]:
        specs = [] if self.adapter is not None else tap_specs(self.model)
        if self.adapter is None and not specs:
            from .adapters import for_model

            self.adapter = for_model(self.model)  # a built-in adapter, or None (then: "nothing to record")
        if self.adapter is not None:
            specs = self.adapter.specs(self.model)
            return specs, self.adapter.parameter_groups(self.model), self.adapter.sublayer_label()
        n_sublayers = max([s.sublayer for s in specs if s.what in ("input", "output")] or [0])
        if n_sublayers == 0:
            cfg = getattr(self.model, "cfg", None)
            n_sublayers = getattr(cfg, "n_sublayers", max([s.sublayer for s in specs] or [0]))
        return specs, tap_parameter_groups(self.model, specs), default_label(n_sublayers)

    def __enter__(self) -> "Probe":
        if self._attached:
            raise ProbeError("this probe is already attached")
        specs, groups, label = self._discover()
        layout, chosen = build_layout(
            specs, self.capture, self._sublayers, self.grads, self._positions, self.dtype, label
        )
        slot_of = {l: i for i, l in enumerate(layout.sublayers)}
        self._groups = {l: ps for l, ps in groups.items() if l in slot_of} if self.grads else {}
        layout.n_params = [sum(p.numel() for p in self._groups.get(l, ())) for l in layout.sublayers]
        self.layout = layout
        self._install(chosen, slot_of)
        try:
            meta = self._manifest_meta()
            for sink in self.sinks:
                sink.begin(layout, meta)
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def _manifest_meta(self) -> dict:
        meta = {"model": model_description(self.model, self.adapter)}
        meta.update(self.meta)
        meta.setdefault("probe", {})
        meta["probe"] = {**meta["probe"], "every": self.every, "capture": list(self.capture)}
        return meta

    def _install(self, chosen: list[TapSpec], slot_of: dict[int, int]) -> None:
        """Precompute, per tap, a closure with everything it needs; register hooks."""
        n = len(chosen)
        self._specs = chosen
        self._vals: list[Any] = [None] * n  # per spec: alpha tensor, or (rms-norm [b, t], d_model)
        self._gvals: list[Any] = [None] * n  # per input spec: (grad norm [b, t], d_model)
        self._greg: list[bool] = [False] * n  # gradient hook placed for this batch
        self._nones = [None] * n
        self._falses = [False] * n
        self._live = [False]  # the current batch is being recorded
        self._tensor_handles: list[Any] = []
        self._handles: list[Any] = []
        self._slot = [slot_of[s.sublayer] for s in chosen]
        self._pending = False
        self._batch_index = -1
        self._tokens: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        window = None if self.layout.positions is None else slice(*self.layout.positions)
        self._window = window
        self._alpha_specs = [j for j, s in enumerate(chosen) if s.what == "alpha"]
        self._rms_specs = {
            q: [j for j, s in enumerate(chosen) if s.what == kind]
            for kind, q in RMS_QUANTITIES.items()
            if q in self.layout.quantities
        }
        self._grad_specs = [j for j, s in enumerate(chosen) if s.what == "input"] if self.grads else []
        self._scales: dict = {}  # (slots, d_models, device) -> 1 / sqrt(d_model) per slot
        # alpha fast path: where each tap's sources land in the flattened [sublayers * max_sources] row
        positions = [self._slot[j] * self.layout.max_sources + k
                     for j in self._alpha_specs for k in range(len(chosen[j].labels))]
        self._alpha_index_cpu = torch.tensor(positions, dtype=torch.long)
        self._alpha_total = len(positions)
        self._alpha_index: dict = {}
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._on_model_start, with_kwargs=True))
            self._handles.append(self.model.register_forward_hook(self._on_model_end))
            for j, spec in enumerate(chosen):
                hook = self._make_hook(j, spec)
                if hook is not None:
                    self._handles.append(spec.module.register_forward_hook(hook, with_kwargs=spec.with_kwargs))
            self._param_sq: list[Any] = []
            self._param_slot: list[int] = []
            if self.grads:
                for l, params in self._groups.items():
                    for p in params:
                        k = len(self._param_sq)
                        self._param_sq.append(None)
                        self._param_slot.append(slot_of[l])
                        self._handles.append(p.register_post_accumulate_grad_hook(self._make_param_hook(k)))
        except BaseException:
            self._remove_hooks()
            raise
        self._attached = True

    def _make_hook(self, j: int, spec: TapSpec):
        vals, live, extract, window = self._vals, self._live, spec.extract, self._window
        if spec.what == "alpha":
            if extract is None:

                def alpha_hook(module, args, out):
                    if live[0] and vals[j] is None:
                        if _is_compiling():
                            raise ProbeError(COMPILE_MESSAGE)
                        vals[j] = (out, out._version)

            elif spec.with_kwargs:

                def alpha_hook(module, args, kwargs, out):
                    if live[0] and vals[j] is None:
                        if _is_compiling():
                            raise ProbeError(COMPILE_MESSAGE)
                        value = extract(module, args, kwargs, out)
                        vals[j] = (value, value._version)

            else:

                def alpha_hook(module, args, out):
                    if live[0] and vals[j] is None:
                        if _is_compiling():
                            raise ProbeError(COMPILE_MESSAGE)
                        value = extract(module, args, out)
                        vals[j] = (value, value._version)

            return alpha_hook
        keep = spec.what in self.capture
        wants_grad = self.grads and spec.what == "input"
        if not keep and not wants_grad:
            return None
        greg, handles, gvals = self._greg, self._tensor_handles, self._gvals

        def grad_hook(grad, j=j):
            if gvals[j] is None:
                g = grad if window is None else grad[:, window]
                gvals[j] = (_vector_norm(g, 2, -1, dtype=_float32), g.shape[-1])

        def rms_hook(module, args, out, kwargs=None):
            if live[0] and (vals[j] is None or (wants_grad and not greg[j])):
                if _is_compiling():
                    raise ProbeError(COMPILE_MESSAGE)
                if extract is None:
                    x = out
                elif kwargs is None:
                    x = extract(module, args, out)
                else:
                    x = extract(module, args, kwargs, out)
                if keep and vals[j] is None:
                    y = x.detach()
                    if window is not None:
                        y = y[:, window]
                    vals[j] = (_vector_norm(y, 2, -1, dtype=_float32), y.shape[-1])
                if wants_grad and not greg[j] and x.requires_grad:
                    greg[j] = True
                    handles.append(x.register_hook(grad_hook))

        if spec.with_kwargs:
            return lambda module, args, kwargs, out: rms_hook(module, args, out, kwargs)
        return rms_hook

    def _make_param_hook(self, k: int):
        sq, live = self._param_sq, self._live

        def param_hook(param):
            if live[0] and param.grad is not None:
                sq[k] = _vector_norm(param.grad.detach(), 2, dtype=_float32)

        return param_hook

    # ----------------------------------------------------------------------------------------- batch cycle

    def _on_model_start(self, module, args, kwargs):
        if _current_graph_task() != -1:
            return None  # a forward re-run inside backward (activation checkpointing): same batch
        if _is_compiling():
            raise ProbeError(COMPILE_MESSAGE)
        if self.training_only and not module.training:
            self._live[0] = False
            return None
        if self._pending:
            self.commit()
        self._batch_index += 1
        live = self._batch_index % self.every == 0
        self._live[0] = live
        if self._tensor_handles:
            for handle in self._tensor_handles:
                handle.remove()
            self._tensor_handles.clear()
        if live:
            self._vals[:] = self._nones
            self._gvals[:] = self._nones
            self._greg[:] = self._falses
            if self._param_sq:
                self._param_sq[:] = [None] * len(self._param_sq)
            first = args[0] if args else kwargs.get("input_ids")
            self._tokens = first if isinstance(first, torch.Tensor) and not first.is_floating_point() else None
            self._labels = None if self.adapter is None else self.adapter.find_labels(args, kwargs)
            self._pending = True
        return None

    def _on_model_end(self, module, args, out):
        if self._live[0] and _current_graph_task() == -1:
            self._logits = find_logits(out, None if self.adapter is None else self.adapter.logits)
        return None

    def commit(
        self,
        *,
        loss: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        document: Any = None,
        position: Any = None,
        step: int | None = None,
        tokens: torch.Tensor | None = None,
    ) -> BatchRecord | None:
        """Hand the current batch to the sinks; returns its record (None when this batch is not recorded).

        loss: per-token loss [batch, tokens]; or targets [batch, tokens]: the per-token cross-entropy of the
        model's output logits [batch, tokens, vocab] against them (logits are found in a tensor, tuple, dict or
        ModelOutput the model returns: see Adapter.logits). A scalar loss the model computed itself (HF
        `output.loss`, attn-res `(logits, loss)`) is accepted: the per-token cross-entropy against `targets` or
        the labels the model was given (Adapter.labels) is recorded, and must average to it. document, position: [batch, tokens] (or
        [tokens], broadcast over the batch); position defaults to the index in the sequence, document to -1.
        step: the training step (default: the batch counter). tokens: token ids, if the model's first input
        is not them. All of these are given for the full sequence; the probe applies `positions` itself.
        """
        if not self._attached:
            raise ProbeError("commit() outside the probe's context")
        if not self._pending:
            return None
        self._pending = False
        record = self._build_record(loss, targets, document, position, step, tokens)
        self._logits = None
        self._tokens = None
        self._labels = None
        self._vals[:] = self._nones
        self._gvals[:] = self._nones
        for sink in self.sinks:
            sink.write(record)
        self.batches_recorded += 1
        return record

    def _build_record(self, loss, targets, document, position, step, tokens) -> BatchRecord:
        layout, window, vals = self.layout, self._window, self._vals
        tokens = self._tokens if tokens is None else tokens
        reference = tokens if tokens is not None else next(
            (v[0] for v in vals if v is not None and v[0].dim() >= 2), None
        )
        if reference is None:
            raise ProbeError("nothing was recorded in this batch (did the model's forward reach the taps?)")
        batch, seq = reference.shape[:2]
        device = reference.device
        start, stop = (0, seq) if window is None else (window.start, min(window.stop, seq))
        if start >= seq:
            raise ProbeError(f"positions {layout.positions} lie beyond the sequence of {seq} tokens")
        width = stop - start

        def per_token(value, default, dtype, name):
            if value is None:
                return default
            value = torch.as_tensor(value).to(device)
            if value.dim() == 1:
                value = value.unsqueeze(0).expand(batch, -1)
            if tuple(value.shape) != (batch, seq):
                raise ProbeError(f"{name} has shape {tuple(value.shape)}, expected [batch, tokens] = {(batch, seq)}")
            return value[:, start:stop].to(dtype)

        with torch.no_grad():
            if tokens is None:
                token = torch.full((batch, width), -1, dtype=torch.int64, device=device)
            else:
                token = per_token(tokens, None, torch.int64, "tokens")
            model_loss = None
            if isinstance(loss, torch.Tensor) and loss.dim() == 0:
                model_loss, loss = loss, None
            if loss is None and (targets is not None or model_loss is not None):
                loss = self._token_losses(targets, model_loss, device)
            nan_tokens = torch.full((batch, width), math.nan, dtype=torch.float32, device=device)
            record = BatchRecord(
                layout=layout,
                step=self._batch_index if step is None else int(step),
                token=token,
                document=per_token(document, torch.full((batch, width), -1, dtype=torch.int64, device=device),
                                   torch.int64, "document"),
                position=per_token(position, torch.arange(start, stop, device=device).expand(batch, -1),
                                   torch.int64, "position"),
                loss=per_token(loss, nan_tokens, torch.float32, "loss"),
            )
            if self._alpha_specs:
                record.alpha = self._alpha_buffer(batch, seq, start, stop, device)
            for quantity, specs in self._rms_specs.items():
                setattr(record, quantity, self._stack(vals, specs, batch, width, device))
            if self.grads:
                record.grad_rms = self._stack(self._gvals, self._grad_specs, batch, width, device)
                record.grad_norms = self._grad_norms(device)
        return record

    def _token_losses(self, targets, model_loss, device) -> torch.Tensor:
        """Per-token cross-entropy [batch, tokens] of the logits against targets (or the labels the model got)."""
        shift = False
        if targets is None:
            if self._labels is None:
                raise ProbeError("commit(loss=<a scalar>) needs targets=... (or an adapter that finds the labels "
                                 "the model was given) to record per-token losses")
            targets, shift = self._labels, self.adapter.shift_labels
        if self._logits is None or self._logits.dim() != 3:
            raise ProbeError("commit(targets=...) needs the model to return logits [batch, tokens, vocab] (found "
                             f"{'none' if self._logits is None else tuple(self._logits.shape)}; see Adapter.logits)")
        targets = torch.as_tensor(targets).to(device)
        if targets.dim() == 1:
            targets = targets.unsqueeze(0)
        logits = self._logits.detach()
        if shift:  # token t is scored against label t + 1; the last token has none
            targets = torch.cat([targets[:, 1:], torch.full_like(targets[:, :1], -100)], dim=1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               reduction="none", ignore_index=-100).view(targets.shape)
        ignored = targets == -100
        loss = loss.masked_fill(ignored, math.nan)
        if model_loss is not None and (~ignored).any():
            mean = float(loss[~ignored].mean())
            if not math.isclose(mean, float(model_loss), rel_tol=1e-3, abs_tol=1e-4):
                raise ProbeError(f"the per-token losses average to {mean:.5g}, but the model's loss is "
                                 f"{float(model_loss):.5g}: pass targets=... (or set Adapter.labels/shift_labels)")
        return loss

    def _alpha_buffer(self, batch: int, seq: int, start: int, stop: int, device) -> torch.Tensor:
        """Every alpha tap's weights [b, t, S_l] into one padded [b, t, sublayers, max_sources] buffer (NaN pad).

        Fast path: one cat of all taps' weights and one index_copy_ into the flattened buffer; a tap that did
        not fire or whose shape is off takes the slow path, which names the tap in its error.
        """
        layout, vals, specs = self.layout, self._vals, self._specs
        n_slots, width, sources = layout.n_slots, stop - start, layout.max_sources
        entries = [vals[j] for j in self._alpha_specs]
        for j, entry in zip(self._alpha_specs, entries):
            if entry is not None and entry[0]._version != entry[1]:
                raise ProbeError(
                    f"the model changed the weights at {specs[j].name} in place after the tap; "
                    "the probe cannot see what the mixer used"
                )
        buffer = torch.full((batch, width, n_slots * sources), math.nan, dtype=self.dtype, device=device)
        if all(e is not None for e in entries):
            try:
                flat = torch.cat([e[0] for e in entries], dim=-1)  # [batch, tokens, sum of sources]
            except RuntimeError:
                flat = None
            if flat is not None and tuple(flat.shape) == (batch, seq, self._alpha_total):
                index = self._alpha_index.get(device)
                if index is None:
                    index = self._alpha_index[device] = self._alpha_index_cpu.to(device)
                if width != seq:
                    flat = flat[:, start:stop]
                buffer.index_copy_(-1, index, flat.detach().to(self.dtype))
                return buffer.view(batch, width, n_slots, sources)
        view = buffer.view(batch, width, n_slots, sources)
        for j, entry in zip(self._alpha_specs, entries):
            if entry is None:
                continue
            value = entry[0]
            count = len(specs[j].labels)
            if value.shape[-1] != count or tuple(value.shape[:2]) != (batch, seq):
                raise ProbeError(
                    f"{specs[j].name}: weights of shape {tuple(value.shape)}, expected "
                    f"[{batch}, {seq}, {count}] ({count} source labels)"
                )
            view[:, :, self._slot[j], :count].copy_(value.detach()[:, start:stop])
        return view

    def _stack(self, vals, specs, batch, width, device) -> torch.Tensor:
        """Per-spec norms [b, t] -> RMS [b, t, sublayers] on the sublayer axis, NaN where nothing fired."""
        out = torch.full((batch, width, self.layout.n_slots), math.nan, dtype=torch.float32, device=device)
        got = [(self._slot[j], vals[j]) for j in specs if vals[j] is not None]
        if got:
            slots = [s for s, _ in got]
            key = (tuple(slots), tuple(v[1] for _, v in got), device)
            scale = self._scales.get(key)
            if scale is None:
                scale = torch.tensor([1.0 / math.sqrt(v[1]) for _, v in got], dtype=torch.float32, device=device)
                self._scales[key] = scale
            rms = torch.stack([v[0] for _, v in got], dim=-1).mul_(scale)  # [batch, tokens, present]
            if slots == list(range(slots[0], slots[0] + len(slots))):
                out[:, :, slots[0]: slots[0] + len(slots)] = rms
            else:
                out[:, :, torch.tensor(slots, device=device)] = rms
        return out

    def _grad_norms(self, device) -> torch.Tensor | None:
        got = [(self._param_slot[k], v) for k, v in enumerate(self._param_sq) if v is not None]
        if not got:
            return None
        squares = torch.stack([v for _, v in got]).to(device).pow(2)
        slots = torch.tensor([s for s, _ in got], device=device)
        total = torch.zeros(self.layout.n_slots, dtype=torch.float32, device=device).index_add_(0, slots, squares)
        present = torch.zeros(self.layout.n_slots, dtype=torch.bool, device=device)
        present[slots] = True
        return torch.where(present, total.sqrt(), torch.full_like(total, math.nan))

    # ------------------------------------------------------------------------------------------------ exit

    def _remove_hooks(self) -> None:
        for handle in getattr(self, "_handles", ()):
            handle.remove()
        for handle in getattr(self, "_tensor_handles", ()):
            handle.remove()
        self._handles = []
        self._tensor_handles = []
        self._attached = False

    def __exit__(self, exc_type, exc, tb) -> None:
        ok = exc_type is None
        try:
            if ok and self._pending:
                self.commit()
        except BaseException:
            ok = False
            raise
        finally:
            self._pending = False
            self._remove_hooks()
            self._logits = self._tokens = self._labels = None
            self._vals[:] = self._nones
            self._gvals[:] = self._nones
            errors = []
            for sink in self.sinks:
                try:
                    sink.close(ok)
                except BaseException as err:  # close every sink, then report the first failure
                    errors.append(err)
            if errors and exc_type is None:
                raise errors[0]


def _is_compiled(model: nn.Module) -> bool:
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # never imported: nothing can be compiled
    optimized = getattr(eval_frame, "OptimizedModule", None)
    return optimized is not None and isinstance(model, optimized)


def model_description(model: nn.Module, adapter: Adapter | None = None) -> dict:
    """The manifest's `model` entry: kind, class, config (when the model carries a dataclass config)."""
    cfg = getattr(model, "cfg", None)
    config = cfg.to_dict() if hasattr(cfg, "to_dict") else None
    kind = getattr(cfg, "mixer", None) or type(model).__name__
    return {
        "kind": kind,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config,
        "adapter": adapter is not None,
        "adapter_name": getattr(adapter, "name", "") or None,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
