"""Runs of any tokenizer: vocabulary.json (schema version 2) gives every reader the real token text, and one
definition of a token label serves the reader, the analyses and the dashboard. Old runs (schema 1) still open."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from depthscope.analyses.per_token import token_table
from depthscope.dashboard.data import Filter, RunData
from depthscope.models import DepthTransformer, ModelConfig
from depthscope.probe import SCHEMA_VERSION, Probe, RunError, RunWriter, open_run
from depthscope.models.vocabulary import token_label

# a subword vocabulary: leading spaces, a newline, a tab, an empty special token, non-ASCII and a control char
WORDS = [" the", " cat", "ing", "\n", "\t", "", "é", "Ġx", "\x07", " sat", "on", " mat"]
VOCAB = WORDS + [f"w{i}" for i in range(len(WORDS), 40)]


@pytest.fixture(scope="module")
def subword_run(tmp_path_factory):
    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer="full_attnres", vocab_size=len(VOCAB), n_layers=2, d_model=16,
                                         n_heads=2, max_seq_len=16))
    path = tmp_path_factory.mktemp("vocab") / "run"
    writer = RunWriter(path, chunk_tokens=16, meta={"tokenizer": {"kind": "test-subwords"}, "vocabulary": VOCAB})
    g = torch.Generator().manual_seed(1)
    with Probe(model, out=writer) as probe:
        for step in range(3):
            x = torch.randint(0, len(VOCAB), (2, 16), generator=g)
            x[0, :4] = torch.tensor([0, 1, 2, 3])  # " the cat" "ing" "\n" at the start of the run
            model(x)
            probe.commit(targets=x, step=step)
    return path


def test_a_run_keeps_its_vocabulary_and_shows_subword_labels(subword_run):
    run = open_run(subword_run)
    assert run.manifest["schema_version"] == SCHEMA_VERSION == 2
    assert run.manifest["vocabulary"] == {"file": "vocabulary.json", "size": len(VOCAB)}
    assert run.vocabulary == VOCAB and run.vocab_size == len(VOCAB)
    labels = [run.token_label(i) for i in range(9)]
    assert labels == [" the", " cat", "ing", "\\n", "\\t", "<5>", "é", "Ġx", "<07>"]
    assert run.token_label(-1) == "" and run.token_label(999) == "<999>"
    assert run.text(0, 4) == " the cating\n"
    frame = run.tokens_frame(0, 4)
    assert frame["char"].tolist() == [" the", " cat", "ing", "\\n"]
    # readable without depthscope: plain JSON, index = token id
    raw = json.loads((subword_run / "vocabulary.json").read_text())
    assert raw["tokens"][1] == " cat" and raw["size"] == len(VOCAB)


def test_analyses_and_dashboard_use_the_readers_labels(subword_run):
    run = open_run(subword_run)
    table = token_table(run, 0, 4)
    assert table.groupby("index")["char"].first().tolist() == [" the", " cat", "ing", "\\n"]
    data = RunData(run).build()
    window = data.token_window(0, 4, slot=1)
    assert window["char"].tolist() == [" the", " cat", "ing", "\\n"]
    assert data.context(1, before=1, after=1) == " the[ cat]ing"
    # the text filter matches a subword's label, so " cat" is found by a pattern with its leading space
    ids = run.token[:]
    result = data.routing(Filter(regex="^ cat$"))
    assert result.tokens == int((ids == 1).sum()) > 0
    top = data.cell(1, 0, Filter(regex="^ (the|cat)$")).top
    assert set(top["char"]) <= {" the", " cat"} and len(top) > 0


def test_the_byte_label_is_one_definition():
    from depthscope.models.data import ByteTokenizer

    byte = ByteTokenizer()
    assert [token_label(t) for t in (97, 10, 9, 13, 0xE2, 0, -1, 300)] == \
        ["a", "\\n", "\\t", "\\r", "<e2>", "<00>", "", "<300>"]
    assert all(token_label(t) == byte.token_label(t) for t in range(256))


def test_schema_1_runs_still_open_with_byte_labels(repo_root, tmp_path):
    demo = repo_root / "assets" / "demo" / "runs" / "residual"
    run = open_run(demo)
    assert run.schema_version == 1 and run.vocabulary is None and run.vocab_size == 256
    first = run.token[:20]
    assert run.tokens_frame(0, 20)["char"].tolist() == [token_label(int(t)) for t in first]
    assert run.text(0, 20) == bytes(int(t) for t in first).decode("utf-8", errors="replace")
    # a copy claiming a future schema is refused with the versions this reader knows
    copy = tmp_path / "future"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("shard-*"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 3
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="schema version 3 is not supported.*1, 2"):
        open_run(copy)


@pytest.mark.parametrize("damage, message", [
    ("missing", "vocabulary.json: missing"),
    ("truncated", "corrupt or truncated JSON"),
    ("not strings", "not a depthscope vocabulary"),
    ("short", "holds 3 tokens; manifest.json says 40"),
])
def test_a_damaged_vocabulary_is_one_clear_error(subword_run, tmp_path, damage, message):
    copy = tmp_path / "run"
    shutil.copytree(subword_run, copy)
    file = copy / "vocabulary.json"
    if damage == "missing":
        file.unlink()
    elif damage == "truncated":
        file.write_text(file.read_text()[:40])
    elif damage == "not strings":
        file.write_text(json.dumps({"format": "depthscope-vocabulary", "tokens": [1, 2]}))
    else:
        file.write_text(json.dumps({"format": "depthscope-vocabulary", "size": 3, "tokens": ["a", "b", "c"]}))
    with pytest.raises(RunError, match=message):
        open_run(copy)


def test_overwriting_a_run_removes_its_old_vocabulary(subword_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(subword_run, copy)
    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer="residual", n_layers=1, d_model=16, n_heads=2, max_seq_len=8))
    with Probe(model, out=RunWriter(copy, overwrite=True)) as probe:
        model(torch.randint(0, 256, (1, 8)))
        probe.commit()
    run = open_run(copy)
    assert not (copy / "vocabulary.json").exists() and run.vocabulary is None
    assert np.isin(run.token[:], np.arange(256)).all()


def test_ids_of_an_unnamed_tokenizer_are_not_read_as_bytes(tmp_path):
    """A foreign model probed from Python without naming its tokenizer: ids are shown as <id>, not as bytes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))
    x = torch.tensor([[97, 10, 300, 499]])
    with Probe(model, out=tmp_path / "run") as probe:
        model(x)
        probe.commit()
    run = open_run(tmp_path / "run")
    assert not run.byte_level and run.vocabulary is None and run.vocab_size is None
    assert run.token_labels(run.token[:]) == ["<97>", "<10>", "<300>", "<499>"]
    with pytest.raises(RunError, match="cannot decode tokens"):
        run.text()
    data = RunData(run).build()
    assert data.token_window(0, 4, slot=0)["char"].tolist() == ["<97>", "<10>", "<300>", "<499>"]
