"""Bootstrap groups of a run's tokens: which group each token belongs to, numbered once for the whole run.

Units (comparison.py's module docstring): "documents" (recorded document ids), "blocks" (consecutive runs of
`block_tokens` tokens), "tokens" (each token), "auto" (documents when the run holds at least MIN_DOCUMENTS,
else blocks). Groups are numbered in the order a chunked pass meets them: by the first chunk that holds
them, and by id within that chunk. That order fixes which group a bootstrap draw picks, so every pass that
sums per group (routing.py's one pass, compare.grouped_sums) must use this numbering to give the same CIs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AnalysisError
from .runs import run_name
from .scanner import Reducer, scan

BLOCK_TOKENS = 256
MIN_DOCUMENTS = 20
MAX_TOKEN_GROUPS = 200_000
UNITS = ("auto", "documents", "blocks", "tokens")


@dataclass
class GroupIndex:
    """ids [tokens] int64: each token's group number (0 .. n_groups - 1, numbered as in the module docstring);
    unit: the resolved unit; asked: the unit asked for ("auto" resolves to documents or blocks);
    block_tokens, chunk_tokens: the block length and the chunking the numbering was made with."""

    unit: str
    ids: np.ndarray
    n_groups: int
    block_tokens: int = BLOCK_TOKENS
    asked: str = "auto"
    chunk_tokens: int | None = None

    def of(self, start: int, stop: int) -> np.ndarray:
        """The group numbers of tokens start .. stop - 1 [stop - start]."""
        return self.ids[start:stop]


class DocumentNumbers(Reducer):
    """Scan reducer: document ids numbered as a chunked pass meets them; result (ids [tokens], id -> number)."""

    arrays = ("document",)

    def __init__(self, n_tokens: int):
        self.index: dict[int, int] = {}
        self.ids = np.empty(n_tokens, dtype=np.int64)

    def partial(self, chunk) -> tuple[int, int, np.ndarray, np.ndarray]:
        uniq, inverse = np.unique(np.asarray(chunk["document"], dtype=np.int64), return_inverse=True)
        return chunk.start, chunk.stop, uniq, inverse

    def merge(self, part) -> None:
        start, stop, uniq, inverse = part
        for g in uniq.tolist():
            if g not in self.index:
                self.index[g] = len(self.index)
        self.ids[start:stop] = np.array([self.index[g] for g in uniq.tolist()], dtype=np.int64)[inverse]

    def result(self) -> tuple[np.ndarray, dict[int, int]]:
        return self.ids, self.index


def _document_groups(run, chunk_tokens: int | None) -> tuple[np.ndarray, dict[int, int]]:
    """Document ids numbered as a chunked pass meets them: ids [tokens], and id -> number (a scan of the
    document ids alone: the numbering must be known before the sums per group are taken)."""
    return scan(run, {"documents": DocumentNumbers(run.n_tokens)}, chunk_tokens)["documents"]


def group_index(run, unit: str = "auto", block_tokens: int = BLOCK_TOKENS,
                chunk_tokens: int | None = None) -> GroupIndex:
    """Each token's bootstrap group (module docstring). Raises ValueError for an unknown unit and AnalysisError
    when the unit cannot be used (no document ids; more than MAX_TOKEN_GROUPS tokens as groups)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be auto, documents, blocks or tokens, got {unit!r}")
    n, asked = run.n_tokens, unit
    if unit in ("auto", "documents"):
        doc_ids, index = (_document_groups(run, chunk_tokens) if "document" in run.captured
                          else (None, {}))
        docs = set(index) - {-1}
        if unit == "documents" and not docs:
            raise AnalysisError(run_name(run), "no document ids recorded; use unit='blocks' or 'tokens'")
        if unit == "documents" or len(docs) >= MIN_DOCUMENTS:
            return GroupIndex("documents", doc_ids, len(index), block_tokens, asked, chunk_tokens)
        unit = "blocks"
    if unit == "tokens" and n > MAX_TOKEN_GROUPS:
        raise AnalysisError(run_name(run), f"{n} tokens is too many groups for a token bootstrap "
                                           f"(at most {MAX_TOKEN_GROUPS}); use unit='blocks'")
    # blocks and tokens are met in increasing order, so their ids are already their numbers
    ids = np.arange(n, dtype=np.int64)
    if unit == "blocks":
        ids //= block_tokens
    return GroupIndex(unit, ids, int(ids[-1]) + 1 if n else 0, block_tokens, asked, chunk_tokens)
