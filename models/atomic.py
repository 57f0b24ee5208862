"""Safe file writes, shared by checkpoints (models/) and runs (probe/): crash-safe replacement (readers see the old
file or the new one, never half of one) and JSON-safe values. A leaf module: it imports nothing from depthscope."""
from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np


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


def json_safe(value: Any) -> Any:
    """value with non-finite floats as None (not valid JSON), numpy scalars as Python numbers and paths as
    strings, recursively through dicts, lists and tuples."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
