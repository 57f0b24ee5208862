"""Recording during training through a per-step callback, e.g. `depthscope.models.train.train(callback=...)`.

    recorder = TrainingRecorder(out="runs/train-block8", summary=True, grads=True, every=10)
    train(model_cfg, train_cfg, corpus, callback=recorder)
    recorder.close()            # marks the run complete (also a context manager: `with recorder: ...`)

The trainer builds its model itself, so the probe attaches at the first callback and records from the next
step on: every `every`-th training forward (evaluation forwards, made in eval mode, are ignored), committed at
the callback of that step with `step` set. The callback runs after backward, so gradients are complete.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .probe import Probe


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
