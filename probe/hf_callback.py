"""Recording routing over training inside the Hugging Face `Trainer`.

    from depthscope.probe.hf_callback import DepthscopeCallback

    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                      callbacks=[DepthscopeCallback("runs/my-training", every=100)])
    trainer.train()              # runs/my-training/step_000100, step_000200, ...: serve runs/ and open Evolution

Every `every`-th optimiser step (all its gradient-accumulation micro-batches) is recorded into its own run by a
depthscope.probe.training.StepRecorder: per-token depth attention, RMS of h_l and f_l, the activation
gradients and per-sublayer gradient norms of that step, its running summaries, the token ids and (from the
`labels` the Trainer passes) the per-token loss. The tokenizer given to the Trainer (`processing_class`) supplies
the run's vocabulary, so the dashboard shows real tokens. Other steps run unhooked.

This module imports `transformers`; nothing else in depthscope does, so depthscope works without it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from transformers import TrainerCallback

from .layout import DEFAULT_CAPTURE
from .training import StepRecorder
from .token_text import describe_tokenizer, text_of_ids


def _is_tokenizer(obj: Any) -> bool:
    return obj is not None and hasattr(obj, "convert_ids_to_tokens") and hasattr(obj, "batch_decode")


class DepthscopeCallback(TrainerCallback):
    """A TrainerCallback recording every `every`-th training step into OUT/step_XXXXXX (see the module
    docstring). Arguments as for depthscope.probe.training.StepRecorder; `vocabulary` defaults to the
    Trainer's tokenizer's."""

    def __init__(self, out: str | Path, *, every: int = 100, summary: bool = True, arrays: bool = True,
                 grads: bool = True, capture: Sequence[str] = DEFAULT_CAPTURE, key: str | None = None,
                 meta: dict | None = None, vocabulary: Sequence[str] | None = None, overwrite: bool = False,
                 **probe_kwargs: Any):
        self.recorder = StepRecorder(out, every=every, summary=summary, arrays=arrays, grads=grads, capture=capture,
                                     key=key, meta=meta, vocabulary=vocabulary, overwrite=overwrite, **probe_kwargs)

    @property
    def written(self) -> list[Path]:
        """The step runs completed so far."""
        return self.recorder.written

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        recorder = self.recorder
        recorder.meta.setdefault("trainer", {
            "learning_rate": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_steps": state.max_steps,
            "seed": args.seed,
        })
        if _is_tokenizer(processing_class):
            recorder.meta.setdefault("tokenizer", describe_tokenizer(processing_class))
            if recorder.vocabulary is None:
                recorder.vocabulary = text_of_ids(processing_class)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        step = state.global_step + 1  # the optimiser step about to run, 1-based
        if model is not None and self.recorder.wants(step):
            self.recorder.begin(model, step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.recorder.probe is not None:
            self.recorder.end(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.recorder.close()
