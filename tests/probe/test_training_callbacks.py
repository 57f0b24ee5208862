"""Routing over training: the plain callback(step, model, loss) and the Hugging Face Trainer's callback write
one run per recorded step, which the dashboard's Evolution page groups and orders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthscope.dashboard import views
from depthscope.dashboard.runs import Catalogue
from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.data import Corpus
from depthscope.models.trainer import TrainConfig, train
from depthscope.probe import RunError, open_run
from depthscope.probe.training import StepRecorder, next_token_targets

torch.set_num_threads(1)


def evolution_steps(root, key):
    """The steps the Evolution page shows for training `key`, and its statistic-over-steps figure."""
    cat = Catalogue(root, background=False)
    training, infos, trainings = views.evolution_runs(cat, {"training": key})
    assert training == key
    figure = views.evolution_stat(cat, {"training": key, "stat": "embedding"})
    steps = sorted({x for trace in figure.data for x in (trace.x if trace.x is not None else [])})
    routing = views.evolution_routing(cat, {"training": key, "step": str(infos[0].step)})
    assert "step" in routing.layout.title.text
    return [i.step for i in infos], steps


def test_step_recorder_writes_one_run_per_kth_step(tmp_path):
    corpus = Corpus(name="toy", documents=[f"document {i}: " + "abc def ghi " * 20 for i in range(40)])
    cfg = ModelConfig(mixer="block_attnres", n_layers=2, d_model=16, n_heads=2, max_seq_len=16, n_blocks=2)
    out = tmp_path / "runs" / "toy-training"
    with StepRecorder(out, every=3) as recorder:
        train(cfg, TrainConfig(steps=8, batch_size=2, seq_len=16, eval_every=2, eval_batches=1, warmup_steps=1),
              corpus, progress=False, callback=recorder)
    # steps 3 and 6 were recorded; step 9 was begun at step 8's callback and never ran: no run left behind
    assert [p.name for p in recorder.written] == ["step_000003", "step_000006"]
    assert sorted(p.name for p in out.iterdir()) == ["step_000003", "step_000006"]
    for path, step in zip(recorder.written, (3, 6)):
        run = open_run(path)
        assert run.complete and run.n_tokens == 2 * 16  # one training batch; evaluation forwards ignored
        assert set(run.step[:].tolist()) == {step}
        assert run.manifest["training"] == {"key": str(out.resolve()), "step": step, "every": 3}
        assert (run.grad_norms["step"] == step).all() and (run.grad_norms["grad_norm"] > 0).all()
        assert run.summary["info"]["tokens"][0] == 32 and len(run.summary["alpha"]) > 0
        assert np.isin(run.token[:], np.arange(256)).all()
    a3, a6 = (open_run(p).alpha[:].astype(np.float32) for p in recorder.written)
    assert not np.allclose(np.nan_to_num(a3), np.nan_to_num(a6))  # routing moved with training
    shown, drawn = evolution_steps(tmp_path / "runs", str(out.resolve()))
    assert shown == drawn == [3, 6]
    with pytest.raises(RunError, match="earlier training"):
        StepRecorder(out, every=3)
    # summaries only: smaller runs, the same statistics as the captured step's
    light = tmp_path / "light"
    with StepRecorder(light, every=3, arrays=False) as recorder:
        train(cfg, TrainConfig(steps=4, batch_size=2, seq_len=16, eval_every=2, eval_batches=1, warmup_steps=1),
              corpus, progress=False, callback=recorder)
    run = open_run(light / "step_000003")
    assert run.complete and run.mode == "summary" and run.arrays == {}
    assert run.summary["info"]["tokens"][0] == 32 and run.manifest["training"]["step"] == 3


def test_next_token_targets_follow_the_hf_label_convention():
    labels = torch.tensor([[5, 6, 7, 8], [1, 2, -100, 3]])
    assert next_token_targets(labels).tolist() == [[6, 7, 8, -100], [2, -100, 3, -100]]


class HFStyleLM(nn.Module):
    """depthscope's Block AttnRes transformer behind the interface the Trainer expects (input_ids, labels ->
    {"loss", "logits"}, the labels shifted inside, as Hugging Face causal LMs do)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.lm = DepthTransformer(ModelConfig(mixer="block_attnres", vocab_size=vocab, n_layers=2, d_model=32,
                                               n_heads=2, max_seq_len=32, n_blocks=2))

    def forward(self, input_ids, labels=None, attention_mask=None):
        logits = self.lm(input_ids)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return out


def test_hf_trainer_callback_records_routing_over_training(tmp_path, tiny_hf_folder):
    import pydoc_data.topics
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from depthscope.probe.hf_callback import DepthscopeCallback

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_folder, local_files_only=True)
    text = " ".join(list(pydoc_data.topics.topics.values())[:20])
    ids = tokenizer.encode(text, add_special_tokens=False)
    seq = 24
    data = [{"input_ids": torch.tensor(ids[i:i + seq]), "labels": torch.tensor(ids[i:i + seq])}
            for i in range(0, seq * 64, seq)]
    torch.manual_seed(0)
    model = HFStyleLM(len(tokenizer))
    out = tmp_path / "runs" / "trainer"
    callback = DepthscopeCallback(out, every=2, key="tiny-trainer")
    args = TrainingArguments(output_dir=str(tmp_path / "trainer-out"), max_steps=6, per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, learning_rate=3e-3, save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True, logging_steps=100, dataloader_num_workers=0,
                             seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[callback])
    trainer.train()
    assert [p.name for p in callback.written] == ["step_000002", "step_000004", "step_000006"]
    seen = {tuple(d["input_ids"].tolist()) for d in data}
    for path, step in zip(callback.written, (2, 4, 6)):
        run = open_run(path)
        assert run.complete and run.mode == "capture"
        assert run.n_tokens == 2 * 2 * seq  # both micro-batches of the accumulated step
        assert set(run.step[:].tolist()) == {step}
        rows = run.token[:].reshape(-1, seq)
        assert all(tuple(r.tolist()) in seen for r in rows)  # the Trainer's batches, token for token
        loss = run.loss[:].reshape(-1, seq)
        assert np.isfinite(loss[:, :-1]).all() and np.isnan(loss[:, -1]).all()
        assert run.vocabulary is not None and run.vocab_size == len(tokenizer)
        assert run.token_label(tokenizer.encode(" the", add_special_tokens=False)[0]) == " the"
        assert run.manifest["trainer"]["gradient_accumulation_steps"] == 2
        assert set(run.grad_norms["step"]) == {step} and np.isfinite(run.grad_rms[:]).any()
        assert len(run.summary["alpha"]) > 0
    shown, drawn = evolution_steps(tmp_path / "runs", "tiny-trainer")
    assert shown == drawn == [2, 4, 6]
    assert json.loads((out / "step_000004" / "manifest.json").read_text())["training"]["key"] == "tiny-trainer"


def test_depthscope_works_without_transformers(clean_env):
    """With transformers made unimportable, the probe, the step recorder and the record workflow import and
    the plain callback records; only the Trainer callback needs the package."""
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("transformers is not installed here")
sys.meta_path.insert(0, Block())
import depthscope.probe, depthscope.probe.training, depthscope.record_foreign, depthscope.cli
from depthscope.probe import StepRecorder
assert "transformers" not in sys.modules
try:
    depthscope.probe.DepthscopeCallback
except ImportError as err:
    print("callback:", err)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "callback: transformers is not installed here" in done.stdout


def test_hf_trainer_callback_on_a_transformers_model(tmp_path, tiny_hf_folder):
    """The Llama-style model from a local folder, probed through its built-in adapter (the residual baseline:
    norms and gradients, no depth weights), trained by the Trainer with the callback."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from depthscope.probe.hf_callback import DepthscopeCallback

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_folder, local_files_only=True)
    ids = tokenizer.encode("def f(x):\n    return x * 2\n" * 40, add_special_tokens=False)
    data = [{"input_ids": ids[i:i + 16], "labels": ids[i:i + 16]} for i in range(0, 16 * 16, 16)]
    callback = DepthscopeCallback(tmp_path / "llama-training", every=1)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer-out"), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=1e-3, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, seed=0)
    Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[callback]).train()
    assert [p.name for p in callback.written] == ["step_000001", "step_000002", "step_000003"]
    before, after = (open_run(p) for p in (callback.written[0], callback.written[-1]))
    for run in (before, after):
        assert run.complete and run.n_tokens == 4 * 16 and {"input_rms", "output_rms", "grad_rms"} <= set(run.captured)
        assert np.isfinite(run.input_rms[:]).all() and np.isfinite(run.loss[:].reshape(4, 16)[:, :-1]).all()
        assert run.sublayer_labels == ["attn1", "mlp1", "attn2", "mlp2"] and len(run.grad_norms) > 0
    seen = {tuple(d["input_ids"]) for d in data}
    assert all(tuple(row) in seen for row in before.token[:].reshape(4, 16).tolist())  # the Trainer's batch
    assert before.text(0, 16) == tokenizer.decode(before.token[:16].tolist())
    # the weights moved between the first and the last recorded step
    assert not np.allclose(before.output_rms[:], after.output_rms[:])
