"""Crash-safe file writes, shared by checkpoints (models/) and runs (probe/): readers see the old file or the new
one, never half of one. A leaf module: it imports nothing from depthscope."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(binary file) on a temporary file beside `path`, fsync it, then rename it over `path`."""
    # os.open with mode 0o666 (not mkstemp's 0o600) so the file gets the usual umask-derived permissions.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
