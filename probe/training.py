"""Recording during training through a per-step callback, e.g. `depthscope.models.trainer.train(callback=...)`.

One run over the whole training (as before):

    recorder = TrainingRecorder(out="runs/train-block8", summary=True, grads=True, every=10)
    train(model_cfg, train_cfg, corpus, callback=recorder)
    recorder.close()            # marks the run complete (also a context manager: `with recorder: ...`)

The trainer builds its model itself, so the probe attaches at the first callback and records from the next
step on: every `every`-th training forward (evaluation forwards, made in eval mode, are ignored), committed at
the callback of that step with `step` set. The callback runs after backward, so gradients are complete.

One run per recorded step, for the dashboard's Evolution page (routing over training):

    recorder = StepRecorder("runs/train-block8", every=50)      # runs/train-block8/step_000050, step_000100, ...
    train(model_cfg, train_cfg, corpus, callback=recorder)

Every `every`-th optimiser step is recorded into its own complete run OUT/step_XXXXXX: the per-token arrays of
that step's training batch (all its micro-batches), its running summaries (summary mode's statistics, in the
run's summary/), gradients, and a manifest `training` entry {key, step, every} by which the Evolution page
groups the runs of one training and orders them. Between recorded steps nothing is hooked, so the other steps
cost nothing. The Hugging Face Trainer's callback (probe/hf_callback.py) drives the same StepRecorder.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .errors import ProbeError
from .layout import DEFAULT_CAPTURE
from .probe import Probe

IGNORE_INDEX = -100  # the label Hugging Face models leave out of the loss
_current_graph_task = getattr(torch._C, "_current_graph_task_id", lambda: -1)


class TrainingRecorder:
    """A callback(step, model, loss) that keeps a Probe on the trained model; kwargs go to Probe."""

    def __init__(self, **probe_kwargs: Any):
        probe_kwargs.setdefault("training_only", True)
        self.probe_kwargs = probe_kwargs
        self.probe: Probe | None = None
        self.model: nn.Module | None = None

    def __call__(self, step: int, model: nn.Module, loss: float) -> None:
        if self.probe is None:
            self.model = model
            self.probe = Probe(model, **self.probe_kwargs).__enter__()
            return
        if model is not self.model:
            raise ValueError("TrainingRecorder: the callback was called with another model")
        self.probe.commit(step=step)

    @property
    def summary(self):
        return None if self.probe is None else self.probe.summary

    def close(self, ok: bool = True) -> None:
        """Detach the probe; with ok, the run (if any) is marked complete."""
        if self.probe is not None:
            probe, self.probe = self.probe, None
            if ok:
                probe.__exit__(None, None, None)
            else:
                probe.__exit__(RuntimeError, RuntimeError("training failed"), None)

    def __enter__(self) -> "TrainingRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def step_run_name(step: int) -> str:
    """Directory of the run of optimiser step `step` inside a StepRecorder's folder."""
    return f"step_{step:06d}"


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """Targets [batch, tokens] of each token under the Hugging Face causal-LM convention (the model is given its
    inputs as labels and shifts them): token t's target is labels[t + 1]; the last token has none (IGNORE_INDEX,
    recorded as a NaN loss, as are tokens whose next label is IGNORE_INDEX)."""
    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)


class _BatchInputs:
    """A forward pre-hook (placed before the probe's) that keeps each training micro-batch's token ids and, when
    the model is given `labels`, its next-token targets; a new micro-batch first commits the previous one (the
    probe then records the per-token loss of the logits against them)."""

    def __init__(self, model: nn.Module, commit):
        self.commit = commit
        self.tokens: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        self.pending = False
        self.handle = model.register_forward_pre_hook(self._start, with_kwargs=True)

    def _start(self, module, args, kwargs):
        if not module.training or _current_graph_task() != -1:
            return None  # evaluation forwards, and forwards re-run inside backward (checkpointing)
        if self.pending:
            self.flush()
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens = ids if isinstance(ids, torch.Tensor) and not ids.is_floating_point() else None
        labels = kwargs.get("labels")
        self.targets = next_token_targets(labels) if isinstance(labels, torch.Tensor) and labels.dim() == 2 else None
        self.pending = True
        return None

    def flush(self) -> None:
        if self.pending:
            self.pending = False
            self.commit(tokens=self.tokens, targets=self.targets)
            self.tokens = self.targets = None

    def remove(self) -> None:
        self.handle.remove()


class StepRecorder:
    """Records every `every`-th optimiser step of a training into its own run OUT/step_XXXXXX.

    As a plain callback(step, model, loss) (depthscope's trainer calls it after backward of step `step`, 1-based):
    the probe is attached at the callback before a recorded step and committed and closed at that step's own
    callback. Other loops call begin(model, step) before the step's forward and end(step) after its backward.

    out: the folder of the step runs. every: record steps every, 2 * every, ... summary: keep running summaries
    in each run (summary mode's statistics). arrays: keep the per-token arrays too (False: summary-only runs,
    smaller, but the Evolution page's views need the arrays). grads: record activation gradients and parameter-gradient norms.
    key: the training's name for the Evolution page (default: the folder's absolute path). meta: more manifest
    fields; vocabulary: the text of each token id (probe.token_text.text_of_ids) for tokenizers other than bytes.
    overwrite: replace step runs an earlier training left in `out` (otherwise they are an error, raised here,
    before training starts). probe_kwargs: more arguments for Probe (adapter, sublayers, positions, ...).
    """

    def __init__(self, out: str | Path, *, every: int = 100, summary: bool = True, arrays: bool = True,
                 grads: bool = True, capture: Sequence[str] = DEFAULT_CAPTURE, key: str | None = None,
                 meta: dict | None = None, vocabulary: Sequence[str] | None = None, overwrite: bool = False,
                 **probe_kwargs: Any):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if not (summary or arrays):
            raise ValueError("StepRecorder: keep summaries, per-token arrays or both")
        old = sorted(Path(out).glob("step_*/manifest.json")) if Path(out).is_dir() else []
        if old and not overwrite:
            from .errors import RunError

            raise RunError(old[0].parent, "a step run of an earlier training is here (pass overwrite=True, or "
                                          "choose another folder)")
        self.out = Path(out)
        self.every = int(every)
        self.summary = bool(summary)
        self.arrays = bool(arrays)
        self.grads = bool(grads)
        self.capture = tuple(capture)
        self.key = key or str(self.out.resolve())
        self.meta = dict(meta or {})
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self.probe_kwargs = probe_kwargs
        self.written: list[Path] = []  # the runs completed so far, in order
        self.probe: Probe | None = None
        self.model: nn.Module | None = None
        self._inputs: _BatchInputs | None = None
        self._step: int | None = None

    def wants(self, step: int) -> bool:
        return step > 0 and step % self.every == 0

    def begin(self, model: nn.Module, step: int) -> None:
        """Attach to `model` to record optimiser step `step` (call before its first forward)."""
        from .store import RunWriter
        from .summary import Summary

        if self.probe is not None:
            raise ProbeError(f"StepRecorder: step {self._step} was begun and never ended")
        meta = {**self.meta, "training": {"key": self.key, "step": int(step), "every": self.every}}
        writer = RunWriter(self.out / step_run_name(step), arrays=self.arrays, overwrite=True, meta=meta,
                           vocabulary=self.vocabulary)
        probe = Probe(model, out=writer, summary=Summary() if self.summary else False, grads=self.grads,
                      capture=self.capture, training_only=True, **self.probe_kwargs)
        inputs = _BatchInputs(model, lambda **kw: probe.commit(step=step, **kw))  # before the probe's hooks
        try:
            probe.__enter__()
        except BaseException:
            inputs.remove()
            raise
        self.probe, self.model, self._inputs, self._step = probe, model, inputs, int(step)

    def end(self, step: int | None = None) -> Path | None:
        """Commit the recorded step's last micro-batch and complete its run; returns the run's path (None when
        no training forward ran while attached: then no run is left behind)."""
        if self.probe is None:
            return None
        if step is not None and step != self._step:
            raise ProbeError(f"StepRecorder: ending step {step}, but step {self._step} is being recorded")
        probe, inputs = self.probe, self._inputs
        try:
            inputs.flush()
        except BaseException:
            self.abort()
            raise
        if probe.batches_recorded == 0:
            self.abort()
            return None
        path = self.out / step_run_name(self._step)
        self.probe = self._inputs = None
        inputs.remove()
        probe.__exit__(None, None, None)
        self.written.append(path)
        return path

    def abort(self) -> None:
        """Detach without completing the run being written: it stays on disk, readable and marked incomplete,
        unless nothing was recorded into it (a step begun that never ran), which leaves no run."""
        if self.probe is None:
            return
        probe, inputs, path = self.probe, self._inputs, self.out / step_run_name(self._step)
        self.probe = self._inputs = None
        inputs.remove()
        probe.__exit__(RuntimeError, RuntimeError("training stopped"), None)
        if probe.batches_recorded == 0 and path.is_dir():
            shutil.rmtree(path)

    def __call__(self, step: int, model: nn.Module, loss: float) -> None:
        """depthscope's trainer callback: called after backward of step `step`."""
        if self.model is not None and model is not self.model:
            raise ValueError("StepRecorder: the callback was called with another model")
        if self.probe is not None:
            self.end(step)
        self.model = model
        if self.wants(step + 1):
            self.begin(model, step + 1)

    def close(self, ok: bool = True) -> None:
        """Stop recording: a step begun and never finished is left incomplete."""
        self.abort()

    def __enter__(self) -> "StepRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)
