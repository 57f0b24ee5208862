"""`depthscope record`: a checkpoint and a corpus in, a run out (tokens, documents, positions, loss, grads)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthscope.models.checkpoint import load_checkpoint, save_checkpoint
from depthscope.models.data import load_corpus
from depthscope.probe import open_run
from depthscope.record import record_run
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("record")
    model = tiny_model("block_attnres", seed=0, query_scale=0, max_seq_len=32)
    save_checkpoint(model, root / "ckpt", {"seed": 0, "corpus_split_seed": 0, "train_config": {"seq_len": 16}})
    text = "\n\n".join(f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog. " * (1 + i % 3)
                       for i in range(120))
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    return root


def test_record_run_writes_what_the_model_computes(setup):
    out = setup / "run"
    result = record_run(setup / "ckpt", setup / "corpus.txt", out, tokens=200, grads=True, batch_size=4,
                        chunk_tokens=64, progress=False)
    assert result.tokens == 208 and result.batches == 4 and not result.exhausted  # whole windows of 16
    run = open_run(out)
    assert run.complete and run.n_tokens == 208 and run.manifest["seq_len"] == 16
    assert run.manifest["tokenizer"]["kind"] == "bytes-utf8" and run.manifest["split"] == "heldout"
    corpus = load_corpus(str(setup / "corpus.txt"))
    windows = list(corpus.heldout_windows(16))[:13]
    np.testing.assert_array_equal(run.token[:], torch.cat([w.inputs for w in windows]).numpy())
    np.testing.assert_array_equal(run.document[:], torch.cat([w.doc_ids for w in windows]).numpy())
    np.testing.assert_array_equal(run.position[:], torch.cat([w.positions for w in windows]).numpy())
    model, _ = load_checkpoint(setup / "ckpt")
    with torch.no_grad():
        x = torch.stack([w.inputs for w in windows[:4]])
        y = torch.stack([w.targets for w in windows[:4]])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none")
    np.testing.assert_allclose(run.loss[:64], loss.numpy(), rtol=1e-5)
    assert np.isfinite(run.grad_rms[:, :4]).all()
    table = run.grad_norms
    assert len(table) == 4 * 4 and sorted(table["step"].unique()) == [0, 1, 2, 3]
    assert (table["grad_norm"] > 0).all()
    assert "the quick brown fox" in run.text()


def test_record_summary_mode_and_a_short_split(setup):
    out = setup / "summary"
    result = record_run(setup / "ckpt", setup / "corpus.txt", out, tokens=10**6, summary=True, batch_size=8,
                        progress=False)
    assert result.exhausted and 0 < result.tokens < 10**6
    run = open_run(out)
    assert run.complete and run.mode == "summary" and run.captured == ()
    assert run.summary["info"]["tokens"][0] == result.tokens
    assert run.summary["loss"]["count"][0] == result.tokens


def test_the_cli_records_and_reports_bad_input(setup, capsys):
    from depthscope.cli import main

    out = setup / "cli"
    assert main(["record", "--checkpoint", str(setup / "ckpt"), "--corpus", str(setup / "corpus.txt"),
                 "--tokens", "64", "--out", str(out), "--batch-size", "2", "--grads", "--no-progress"]) == 0
    assert f"run: {out} (64 tokens in 2 batches" in capsys.readouterr().out
    run = open_run(out)
    assert run.complete and run.n_tokens == 64 and "grad_rms" in run.captured
    # an existing run is kept, with a clear error
    assert main(["record", "--checkpoint", str(setup / "ckpt"), "--corpus", str(setup / "corpus.txt"),
                 "--out", str(out), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert open_run(out).n_tokens == 64
    # a corrupt checkpoint names its file
    bad = setup / "bad"
    bad.mkdir()
    (bad / "checkpoint.json").write_text("{not json")
    assert main(["record", "--checkpoint", str(bad), "--corpus", str(setup / "corpus.txt"), "--out",
                 str(setup / "never"), "--no-progress"]) == 1
    assert "checkpoint.json" in capsys.readouterr().err
    assert not (setup / "never").exists()
