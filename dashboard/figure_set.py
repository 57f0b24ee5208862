"""The paper's figure set of a run against a baseline, in one call (`depthscope figures`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def _checkpoint_of(run_dir: Path, checkpoints: Path | None) -> Path:
    """The checkpoint a run was recorded from (its manifest's `checkpoint`, relative to the run), else
    checkpoints/<run name>."""
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    recorded = manifest.get("checkpoint")
    candidates = [(run_dir / recorded).resolve()] if recorded else []
    if checkpoints is not None:
        candidates.append(Path(checkpoints) / run_dir.name)
    for path in candidates:
        if (path / "checkpoint.json").is_file():
            return path
    raise FileNotFoundError(f"{run_dir.name}: Hyper-Connection mixing needs the model, and no checkpoint was "
                            f"found (looked in {', '.join(map(str, candidates)) or 'nothing'})")


def mixing_frames(runs: dict[str, str | Path], checkpoints: str | Path | None = None,
                  windows: int = 8) -> dict[str, pd.DataFrame]:
    """{name: tidy effective-mixing frame} of several runs (analyses.mixing.Mixing.frame()). Runs give M from their
    token-mean depth attention; Hyper-Connection runs do not record stream mixing, so theirs comes from the
    checkpoint they were recorded from (mixing_from_model on `windows` held-out windows of their corpus)."""
    from depthscope.analyses.mixing import mixing_from_model, mixing_from_run
    from depthscope.probe import open_run

    frames = {}
    for name, path in runs.items():
        run = open_run(path)
        kind = (run.manifest.get("model") or {}).get("kind")
        if kind == "hyper":
            import torch

            from depthscope.models.checkpoint import load_checkpoint
            from depthscope.models.data import load_corpus

            model, _ = load_checkpoint(_checkpoint_of(Path(path), Path(checkpoints) if checkpoints else None))
            seq_len = int(run.manifest.get("seq_len") or model.cfg.max_seq_len)
            inputs, _ = load_corpus(run.manifest.get("corpus") or "pydoc", seed=0).eval_batch(windows, seq_len)
            with torch.no_grad():
                frames[name] = mixing_from_model(model.eval(), inputs).frame()
        else:
            frames[name] = mixing_from_run(run).frame()
    return frames
