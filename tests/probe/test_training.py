"""Recording during training: the trainer's per-step callback drives a probe every k steps."""
from __future__ import annotations

import numpy as np
import torch

from depthscope.models import ModelConfig
from depthscope.models.data import Corpus
from depthscope.models.trainer import TrainConfig, train
from depthscope.probe import TrainingRecorder, open_run

torch.set_num_threads(1)


def test_training_recorder_records_every_kth_step_with_gradients(tmp_path):
    corpus = Corpus(name="toy", documents=[f"document {i}: " + "abc def ghi " * 20 for i in range(40)])
    cfg = ModelConfig(mixer="full_attnres", n_layers=1, d_model=16, n_heads=2, max_seq_len=16)
    recorder = TrainingRecorder(out=tmp_path / "run", summary=True, grads=True, every=2)
    with recorder:
        train(cfg, TrainConfig(steps=7, batch_size=2, seq_len=16, eval_every=3, eval_batches=1, warmup_steps=1),
              corpus, progress=False, callback=recorder)
    run = open_run(tmp_path / "run")
    assert run.complete
    # attached at step 1; training forwards of steps 2..7 are batches 0..5, of which 0, 2, 4 are recorded
    assert sorted(set(run.step[:].tolist())) == [2, 4, 6]
    assert run.n_tokens == 3 * 2 * 16  # evaluation forwards (eval mode) were not recorded
    assert sorted(run.grad_norms["step"].unique()) == [2, 4, 6]
    assert np.isfinite(run.grad_rms[:, :2]).all() and (run.grad_norms["grad_norm"] > 0).all()
    assert run.summary["info"]["tokens"][0] == 96
