"""The probe's two errors: one for bad runs on disk, one for a probe that cannot attach or record."""
from __future__ import annotations

from pathlib import Path


class RunError(ValueError):
    """A run on disk cannot be read (or written): the message names the file and what is wrong with it.

    `path` is the offending file or directory, `problem` the bare description.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ProbeError(RuntimeError):
    """A probe cannot attach to a model or record what was asked (no taps, torch.compile, misuse)."""
