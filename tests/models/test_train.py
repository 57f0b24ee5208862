"""The trainer is deterministic under a seed, learns, and the `depthscope train` CLI writes a loadable checkpoint."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.checkpoint import load_checkpoint
from depthscope.models.data import RecallSpec, load_corpus
from depthscope.models.trainer import TrainConfig, learning_rate, parameter_groups, train
from tiny_models import tiny_config  # tests/tiny_models.py: the one tiny model


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("pydoc")


def small_config(mixer: str = "block_attnres", **overrides) -> ModelConfig:
    """The suite's tiny model, twice as wide, for sequences of 64 tokens."""
    return tiny_config(mixer, **{"d_model": 32, "max_seq_len": 64, **overrides})


def quick(steps: int = 6, **overrides) -> TrainConfig:
    base = dict(steps=steps, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, eval_every=3, eval_batches=2,
                num_threads=1)
    base.update(overrides)
    return TrainConfig(**base)


def test_same_seed_identical_losses_different_seed_different(corpus):
    first = train(small_config(), quick(seed=1), corpus, progress=False)
    second = train(small_config(), quick(seed=1), corpus, progress=False)
    other = train(small_config(), quick(seed=2), corpus, progress=False)
    assert len(first.train_losses) == 6 and all(math.isfinite(x) for x in first.train_losses)
    assert first.train_losses == second.train_losses  # bit-identical
    assert first.heldout_losses == second.heldout_losses
    assert first.eval_steps == [0, 3, 6]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert other.train_losses != first.train_losses


def test_heldout_loss_falls(corpus):
    result = train(
        small_config(), quick(steps=60, batch_size=8, seq_len=64, lr=1e-2, warmup_steps=6, eval_every=30),
        corpus, progress=False,
    )
    first, last = result.heldout_losses[0], result.heldout_losses[-1]
    assert first == pytest.approx(math.log(256), abs=0.1)  # near-uniform prediction at init
    assert last < first - 1.5, result.heldout_losses
    assert result.tokens_seen == 60 * 8 * 64
    assert result.tokens_per_s > 0


def test_callback_sees_gradients_and_checkpoints_along_training(corpus, tmp_path):
    seen = []

    def record(step, model, loss):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        seen.append((step, loss, len(grads), sum(float(g.norm()) for g in grads)))

    out = tmp_path / "run"
    result = train(small_config("full_attnres"), quick(steps=4, save_every=2), corpus, out_dir=out, progress=False,
                   callback=record)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert [s[1] for s in seen] == result.train_losses
    assert all(n > 0 and norm > 0 for _, _, n, norm in seen)
    assert [p.name for p in result.step_checkpoints] == ["step_000000", "step_000002", "step_000004"]
    assert result.checkpoint_dir == out
    model, info = load_checkpoint(out)
    assert info.training["steps"] == 4
    assert info.training["train_losses"] == result.train_losses
    assert info.training["heldout_losses"] == result.heldout_losses
    assert info.training["corpus"] == "pydoc" and info.training["seed"] == 0
    assert info.training["tokens_seen"] == 4 * 4 * 32
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)
    early, _ = load_checkpoint(out / "step_000002")
    assert not torch.equal(early.head.weight, model.head.weight)
    assert load_checkpoint(out / "step_000002")[1].training["steps"] == 2


def test_schedule_and_weight_decay_groups():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1)
    model = DepthTransformer(small_config("block_attnres"))
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "mixer.depth.queries" in exempt and "mixer.depth.key_gains" in exempt  # pseudo-queries, 2-d
    assert "final_norm.weight" in exempt and "sublayers.0.norm.weight" in exempt
    assert "head.weight" in decayed and "embed.weight" in decayed and "sublayers.0.body.qkv.weight" in decayed
    assert decayed | exempt == set(names.values()) and not decayed & exempt


def test_recall_corpus_trains(tmp_path):
    corpus = load_corpus("recall", recall_spec=RecallSpec(n_documents=200))
    result = train(small_config("residual"), quick(steps=3), corpus, progress=False)
    assert len(result.train_losses) == 3


def test_bad_configs():
    with pytest.raises(ValueError, match="max_seq_len"):
        train(small_config(), quick(seq_len=128), load_corpus("recall", recall_spec=RecallSpec(n_documents=50)),
              progress=False)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def run_cli(venv_bin, clean_env, *args, module=False, timeout=240):
    command = [sys.executable, "-m", "depthscope.cli", *args] if module else [str(venv_bin / "depthscope"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env, timeout=timeout)


def test_cli_help(venv_bin, clean_env):
    from depthscope.models import MIXERS
    from depthscope.models.data import CORPORA

    top = run_cli(venv_bin, clean_env, "--help")
    assert top.returncode == 0, top.stderr
    assert "train" in top.stdout and "depth routing" in top.stdout
    sub = run_cli(venv_bin, clean_env, "train", "--help")
    assert sub.returncode == 0, sub.stderr
    for flag in ("--mixer", "--blocks", "--corpus", "--two-phase", "--mhc", "--save-every", "--out", "--streams"):
        assert flag in sub.stdout
    assert "block_attnres" in sub.stdout
    # the choices and corpus names come from the models' own lists
    assert "{" + ",".join(MIXERS) + "}" in sub.stdout and ", ".join(CORPORA) in sub.stdout


def test_cli_train_end_to_end(venv_bin, clean_env, tmp_path):
    out = tmp_path / "ckpt"
    args = ["train", "--mixer", "hyper", "--mhc", "--streams", "2", "--layers", "2", "--d-model", "32",
            "--heads", "2", "--corpus", "pydoc", "--steps", "6", "--batch-size", "4", "--seq-len", "32",
            "--eval-every", "3", "--eval-batches", "1", "--seed", "3", "--save-every", "3", "--out", str(out),
            "--no-progress", "--threads", "1"]
    done = run_cli(venv_bin, clean_env, *args, module=True)
    assert done.returncode == 0, done.stderr
    assert f"checkpoint: {out}" in done.stdout
    assert "held-out loss:" in done.stdout and "(step 0)" in done.stdout and "(step 6)" in done.stdout
    model, info = load_checkpoint(out)
    assert info.config.mixer == "hyper" and info.config.mhc and info.config.hyper_streams == 2
    assert info.training["steps"] == 6 and info.training["seed"] == 3
    assert (out / "step_000003" / "checkpoint.json").is_file()
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["training"]["train_config"]["batch_size"] == 4
    # The console script refuses to overwrite without --overwrite, with one clear message.
    again = run_cli(venv_bin, clean_env, *args)
    assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_errors_are_one_line(tmp_path, capsys):
    from depthscope.cli import main

    assert main(["train", "--corpus", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o"), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "depthscope train: error:" in err and "nope.txt" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--mixer", "residual", "--mhc", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "--mhc applies to --mixer hyper only" in capsys.readouterr().err
