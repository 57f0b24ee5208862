"""The causal check on what a run was recorded from: load the run's checkpoint and held-out text, then ablate
(analyses.causal.causal_ablation, a pure function of a model and tokens).

    causal_from_run(run)     the check `depthscope analyze` runs (families embedding / recent / history)
    source_ablation(run)     one family per single source: the dashboard's ablation view (analyses.ablation)

Loading checkpoints and corpora is a workflow, so it lives here beside the CLI; `depthscope analyze`, `serve`,
`demo` and `export` hand these functions to the analyses and the dashboard.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from depthscope.analyses import AnalysisError, as_run, causal_ablation, run_name, source_table


def recorded_text(run, max_tokens: int, device: str = "cpu"):
    """(model, tokens [batch, seq_len], targets [batch, seq_len]): the model at the run's checkpoint and the first
    `max_tokens` tokens (whole windows) of the text it was recorded over (the manifest's corpus, split, data
    seed and seq_len)."""
    from depthscope.models import load_checkpoint, load_corpus

    run = as_run(run)
    manifest = getattr(run, "manifest", {}) or {}
    checkpoint = getattr(run, "checkpoint", None) or manifest.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise AnalysisError(run_name(run), "the causal check needs the run's checkpoint "
                                           f"({checkpoint or 'not named in the manifest'})")
    model, info = load_checkpoint(checkpoint, device=device)
    training = info.training or {}
    seed = (manifest.get("seed") or {}).get("data", training.get("corpus_split_seed", 0)) or 0
    corpus = load_corpus(manifest.get("corpus"), seed=int(seed),
                         heldout_fraction=float(training.get("heldout_fraction", 0.05) or 0.05))
    seq_len = int(manifest.get("seq_len") or 128)
    windows = []
    for w in corpus.heldout_windows(seq_len, split=manifest.get("split", "heldout")):
        windows.append(w)
        if len(windows) * seq_len >= max_tokens:
            break
    if not windows:
        raise AnalysisError(run_name(run), "no held-out windows for the causal check")
    tokens = torch.stack([w.inputs for w in windows]).to(device)  # [batch, seq_len]
    targets = torch.stack([w.targets for w in windows]).to(device)
    return model, tokens, targets


def causal_from_run(run, max_tokens: int = 2048, each: bool = False, device: str = "cpu") -> pd.DataFrame:
    """causal_ablation on the model and held-out text a run was recorded from: the first `max_tokens` tokens."""
    model, tokens, targets = recorded_text(run, max_tokens, device)
    return causal_ablation(model, tokens, targets, each=each)


def source_ablation(run, max_tokens: int = 512) -> pd.DataFrame:
    """The per-source ablation table of the dashboard's view (analyses.ablation.source_table)."""
    return source_table(causal_from_run(run, max_tokens=max_tokens, each=True))
