"""Token-text filter: which token ids a regular expression matches, computed once per (pattern, vocabulary).

The regex filter matches a token's label (`label(id)`), never its neighbours, so a pattern selects a set of ids
and filtering tokens becomes a lookup `table[token_ids]` (vectorised) instead of a regex call per token.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

import numpy as np


class PatternError(ValueError):
    """The pattern is not a valid regular expression."""


@lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise PatternError(f"bad regular expression /{pattern}/: {err}") from None


@lru_cache(maxsize=64)
def _table(pattern: str, vocab: int, label: Callable[[int], str]) -> np.ndarray:
    regex = compile_pattern(pattern)
    table = np.fromiter((bool(regex.search(label(t))) for t in range(vocab)), dtype=bool, count=vocab)
    table.flags.writeable = False  # shared by every caller through the cache
    return table


def match_table(pattern: str, vocab: int, label: Callable[[int], str]) -> np.ndarray:
    """[vocab] bool: True where the label of that token id matches `pattern` (cached, read-only)."""
    return _table(pattern, int(vocab), label)


def matches(tokens: np.ndarray, pattern: str, label: Callable[[int], str]) -> np.ndarray:
    """[tokens] bool mask of the token ids whose label matches `pattern`. Ids outside [0, vocab) (e.g. -1 for
    'no token recorded') are looked up through their own label, once per distinct id."""
    tokens = np.asarray(tokens)
    if tokens.size == 0:
        return np.zeros(0, dtype=bool)
    top = int(tokens.max())
    if int(tokens.min()) >= 0 and top < 1 << 16:
        return match_table(pattern, top + 1, label)[tokens]
    regex = compile_pattern(pattern)
    uniq, inverse = np.unique(tokens, return_inverse=True)
    hit = np.array([bool(regex.search(label(int(t)))) for t in uniq], dtype=bool)
    return hit[inverse]
