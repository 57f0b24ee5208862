"""Record a run from a checkpoint (record_run), or from any language model (record_model), over a corpus: what
`depthscope record` does, callable from Python. Models depthscope did not build: depthscope.record_foreign.

Consecutive windows of the corpus's held-out split (or train split) go through the model in batches. Each
token is recorded with its document and position and the loss of predicting the next token. With grads=True
the mean LM loss of each batch is backpropagated (no optimiser step; gradients are cleared after each batch)
to record dLoss/dh_l per token and each sublayer's parameter-gradient norm per batch.

The recording options (RecordOptions) are stated once and serve record_run, record_model, record_foreign and
the `record` command's options; each function also takes them as keywords:

    record_run("out/block8", "pydoc", "runs/block8", tokens=20_000, grads=True)
    record_run("out/block8", "pydoc", "runs/block8", RecordOptions(tokens=20_000, grads=True))
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from depthscope.models import option
from depthscope.probe import DEFAULT_CAPTURE, DEFAULT_CHUNK_TOKENS, Probe, RunWriter, Summary, find_logits


@dataclass
class RecordOptions:
    """How a corpus is recorded through a model (the model and corpus themselves are arguments)."""

    tokens: int = option(100_000, "tokens to record, in whole windows of --seq-len")
    grads: bool = option(False, "backpropagate the LM loss of each batch (no optimiser step) to record dLoss/dh per "
                                "token and each sublayer's parameter-gradient norm")
    summary: bool = option(False, "keep running summaries (mean/variance of each weight, jump histograms, norm "
                                  "statistics) instead of per-token arrays")
    batch_size: int = option(8, "windows per forward")
    # None: the checkpoint's training seq_len (record_run), min(256, the model's longest sequence)
    # (record_foreign), 256 (record_model)
    seq_len: int | None = option(None, "tokens per window (default: the checkpoint's training --seq-len; for --hf and "
                                       "--model min(256, the model's longest sequence))")
    split: str = option("heldout", "which side of the corpus split to read", choices=("heldout", "train"))
    chunk_tokens: int = option(DEFAULT_CHUNK_TOKENS, "tokens per on-disk chunk")
    overwrite: bool = option(False, "replace a run already in --out")
    device: str = option("cpu", "torch device")
    progress: bool = option(True, "no progress bar", flag="--no-progress")
    capture: tuple[str, ...] = DEFAULT_CAPTURE

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.batch_size < 1 or self.chunk_tokens < 1 or (
                self.seq_len is not None and self.seq_len < 1):
            raise ValueError("--tokens, --batch-size, --seq-len and --chunk-tokens must be at least 1")


def record_options(options: RecordOptions | None = None, **changes) -> RecordOptions:
    """`options` (default: RecordOptions()) with `changes`, the keyword form of the recording functions."""
    return replace(options or RecordOptions(), **changes)


@dataclass
class RecordResult:
    path: Path
    tokens: int
    batches: int
    seconds: float
    exhausted: bool  # the split ran out before the requested number of tokens


def _windows(corpus, seq_len: int, split: str):
    stream = corpus.split(split)
    if len(stream) < seq_len + 1:
        from depthscope.models import CorpusError

        raise CorpusError(
            f"the {split} split of corpus {corpus.name!r} has {len(stream)} tokens, fewer than seq_len + 1 = "
            f"{seq_len + 1}; use a shorter --seq-len"
        )
    return corpus.heldout_windows(seq_len, split=split)


def record_run(
    checkpoint: str | Path,
    corpus: str | Path,
    out: str | Path,
    options: RecordOptions | None = None,
    *,
    data_seed: int | None = None,
    **changes,
) -> RecordResult:
    """Record about `options.tokens` tokens (whole windows of seq_len) of `corpus` through the model at
    `checkpoint` into the run directory `out`; `changes`: RecordOptions fields given as keywords.

    data_seed defaults to the split seed the checkpoint was trained with, so that "heldout" really is text the
    model never saw.
    """
    from depthscope.models import load_checkpoint, load_corpus

    opts = record_options(options, **changes)
    model, info = load_checkpoint(checkpoint, device=opts.device)
    training = info.training or {}
    train_cfg = training.get("train_config") or {}
    seq_len = opts.seq_len
    if seq_len is None:
        seq_len = int(train_cfg.get("seq_len") or min(256, info.config.max_seq_len))
    if seq_len > info.config.max_seq_len:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's max_seq_len {info.config.max_seq_len}")
    if data_seed is None:
        data_seed = int(training.get("corpus_split_seed", 0) or 0)
    text = load_corpus(corpus, seed=data_seed, heldout_fraction=float(training.get("heldout_fraction", 0.05) or 0.05))
    meta = {
        # Relative to the run directory, so a folder of runs and checkpoints can be moved or cloned as a whole.
        "checkpoint": os.path.relpath(Path(checkpoint).resolve(), Path(out).resolve()),
        "corpus": text.name,
        "split": opts.split,
        "seed": {"data": data_seed, "training": training.get("seed")},
        "tokenizer": info.tokenizer.to_dict(),
        "seq_len": seq_len,
        "batch_size": opts.batch_size,
        "loss": "cross-entropy of predicting the next token, per token",
        "grad_loss": "mean cross-entropy over the batch's tokens" if opts.grads else None,
        "training": {k: training.get(k) for k in ("steps", "tokens_seen", "final_heldout_loss", "seed")},
    }
    return record_model(model, text, out, replace(opts, seq_len=seq_len), meta=meta, name=info.config.mixer)


def logits_of(output: Any) -> torch.Tensor:
    """The logits [batch, tokens, vocab] in what a language model's forward returned (adapter.find_logits: a
    tensor, a tuple's, a dict's or a ModelOutput's); ValueError naming what came back when there are none."""
    found = find_logits(output)
    if not isinstance(found, torch.Tensor) or found.dim() != 3:
        shape = f" with logits of shape {tuple(found.shape)}" if isinstance(found, torch.Tensor) else ""
        raise ValueError(f"the model returned {type(output).__name__}{shape}; recording needs logits "
                         "[batch, tokens, vocab] (a tensor, a tuple holding one, or an output with 'logits')")
    return found


def record_model(
    model: nn.Module,
    corpus,
    out: str | Path,
    options: RecordOptions | None = None,
    *,
    meta: dict | None = None,
    name: str = "model",
    probe_kwargs: dict | None = None,
    **changes,
) -> RecordResult:
    """Record about `options.tokens` tokens (whole windows of seq_len, default 256) of `corpus`'s split through
    `model`; `changes`: RecordOptions fields given as keywords.

    model(inputs [batch, tokens]) must return logits (see logits_of). corpus: a depthscope Corpus, tokenised by
    its own tokenizer. meta: manifest fields (a "vocabulary" list goes to vocabulary.json). probe_kwargs: more
    arguments for Probe (e.g. an adapter).
    """
    opts = record_options(options, **changes)
    tokens, grads, batch_size, device = opts.tokens, opts.grads, opts.batch_size, opts.device
    seq_len = opts.seq_len or 256
    writer = RunWriter(out, chunk_tokens=opts.chunk_tokens, arrays=not opts.summary, overwrite=opts.overwrite,
                       meta=meta)
    n_windows = math.ceil(tokens / seq_len)
    bar = None
    if opts.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_windows * seq_len, desc=f"record {name}", unit="tok", unit_scale=True,
                   dynamic_ncols=True)
    started = time.perf_counter()
    recorded = batches = 0
    windows = _windows(corpus, seq_len, opts.split)
    exhausted = False
    was_training = model.training
    model.eval()
    try:
        with Probe(model, out=writer, summary=Summary() if opts.summary else False, grads=grads,
                   capture=opts.capture, **(probe_kwargs or {})) as probe:
            while recorded < n_windows * seq_len:
                group = []
                for window in windows:
                    group.append(window)
                    if len(group) == min(batch_size, n_windows - recorded // seq_len):
                        break
                if not group:
                    exhausted = True
                    break
                inputs = torch.stack([w.inputs for w in group]).to(device)  # [batch, tokens]
                targets = torch.stack([w.targets for w in group]).to(device)
                with torch.set_grad_enabled(grads):
                    logits = logits_of(model(inputs))  # [batch, tokens, vocab]
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                           reduction="none").view(targets.shape)  # [batch, tokens]
                    if grads:
                        loss.mean().backward()
                probe.commit(loss=loss.detach(), document=torch.stack([w.doc_ids for w in group]),
                             position=torch.stack([w.positions for w in group]), step=batches, tokens=inputs)
                if grads:
                    model.zero_grad(set_to_none=True)
                recorded += inputs.numel()
                batches += 1
                if bar is not None:
                    bar.update(inputs.numel())
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return RecordResult(Path(out), recorded, batches, time.perf_counter() - started, exhausted)
