"""The text of every token id of a tokenizer, as a run stores it in vocabulary.json (see SCHEMA.md).

Works with any Hugging Face tokenizer (`transformers` slow or fast, through its public methods) and with a bare
`tokenizers.Tokenizer`; nothing here imports either library.

    text_of_ids(tokenizer)       ["<unk>", " the", "ing", "\\n", ...]: index = token id
    describe_tokenizer(tok)      the manifest's `tokenizer` entry (kind, class, name, vocab_size)
    encode(tokenizer, text)      token ids of `text`, without special tokens

The text of an id is the tokenizer's decoding of that id alone, with two fixes so that a label says what the
token is: a SentencePiece word piece ("▁the") keeps its leading space even when the tokenizer drops it at the
start of a text, and a piece that is no text on its own (part of a UTF-8 character in a byte-level BPE decodes
to U+FFFD) keeps the piece's own spelling instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SENTENCEPIECE_SPACE = "\u2581"  # "▁", SentencePiece's word-start mark
REPLACEMENT = "\ufffd"


def _is_bare(tokenizer: Any) -> bool:
    """A `tokenizers.Tokenizer` (Rust object) rather than a `transformers` tokenizer."""
    return hasattr(tokenizer, "get_vocab_size") and hasattr(tokenizer, "id_to_token")


def vocab_size(tokenizer: Any) -> int:
    """Number of token ids, added tokens included."""
    if _is_bare(tokenizer):
        return int(tokenizer.get_vocab_size(with_added_tokens=True))
    return int(len(tokenizer))


def encode(tokenizer: Any, text: str) -> np.ndarray:
    """Token ids [tokens] (int64) of `text`, without special tokens."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    ids = getattr(ids, "ids", ids)  # a bare tokenizer returns an Encoding
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def text_of_ids(tokenizer: Any) -> list[str]:
    """The text each token id stands for (index = id; see the module docstring)."""
    size = vocab_size(tokenizer)
    singles = [[i] for i in range(size)]
    if _is_bare(tokenizer):
        pieces = [tokenizer.id_to_token(i) or "" for i in range(size)]
        texts = tokenizer.decode_batch(singles, skip_special_tokens=False)
    else:
        pieces = [p or "" for p in tokenizer.convert_ids_to_tokens(list(range(size)))]
        texts = tokenizer.batch_decode(singles, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    out = []
    for piece, text in zip(pieces, texts):
        piece, text = str(piece), str(text)
        if REPLACEMENT in text and REPLACEMENT not in piece:
            text = piece
        elif piece.startswith(SENTENCEPIECE_SPACE) and not text.startswith(" "):
            text = " " + text
        out.append(text)
    return out


def describe_tokenizer(tokenizer: Any, name: str | None = None) -> dict:
    """The manifest's `tokenizer` entry for a tokenizer other than depthscope's bytes."""
    return {
        "kind": "tokenizers" if _is_bare(tokenizer) else "transformers",
        "class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        "name": name or str(getattr(tokenizer, "name_or_path", "") or ""),
        "vocab_size": vocab_size(tokenizer),
    }
