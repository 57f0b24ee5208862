"""Decoding a stored Zarr v3 chunk straight from its file, into a buffer the caller reuses.

The run store writes every array with the codec chain bytes (little endian) + zstd (SCHEMA.md). For that chain
a chunk file is one zstd frame of the raw little-endian rows, so reading it needs no Zarr machinery: read the
file, decompress into `out`. Streaming analyses do that for every chunk, and it is about twice as fast as a
Zarr read: no event-loop round trip, and no fresh multi-MB array per chunk (whose page faults cost about as
much as the decompression). zstd verifies the frame's checksum; numcodecs releases the GIL while it
decompresses, so several threads can decode at once. Arrays with any other codec chain (older or foreign
writers) are read through Zarr instead (`plain_zstd` says which).
"""
from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np

_MAGIC = 0xFD2FB528
_ZSTD = None
_LOCAL = threading.local()  # per thread: a reused buffer for the compressed bytes


def plain_zstd(metadata: dict, dtype: np.dtype) -> bool:
    """Whether Zarr v3 array metadata (ArrayV3Metadata.to_dict()) stores chunks as one zstd frame of the raw
    little-endian bytes, under the default '/'-separated chunk keys and without storage transformers."""
    codecs = [dict(c) for c in metadata.get("codecs", ())]
    if [c.get("name") for c in codecs] != ["bytes", "zstd"] or not np.little_endian:
        return False
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if endian != "little" and np.dtype(dtype).itemsize > 1:
        return False
    key = metadata.get("chunk_key_encoding") or {}
    separator = (key.get("configuration") or {}).get("separator", "/")
    return key.get("name") == "default" and separator == "/" and not metadata.get("storage_transformers")


def frame_content_size(data: bytes | memoryview) -> int | None:
    """The decompressed size a zstd frame header declares; None when it declares none (or is no zstd frame)."""
    if len(data) < 6 or struct.unpack_from("<I", data)[0] != _MAGIC:
        return None
    desc = data[4]
    fcs_flag, single, did_flag = desc >> 6, (desc >> 5) & 1, desc & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[did_flag]
    width = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if width == 0 or len(data) < pos + width:
        return None
    value = int.from_bytes(bytes(data[pos:pos + width]), "little")
    return value + 256 if width == 2 else value


def decode_into(path: Path, out: np.ndarray) -> np.ndarray:
    """Decompress the chunk file at `path` into `out` (C-contiguous, the chunk's full shape and dtype).

    Raises ValueError when the frame is corrupt or truncated (zstd checksum) or decodes to another size than
    `out`, and OSError when the file cannot be read."""
    global _ZSTD
    if _ZSTD is None:
        from numcodecs import Zstd

        _ZSTD = Zstd()
    data = _read(path)
    size = frame_content_size(data)
    try:
        if size is None:  # no declared size: let zstd allocate, then check and copy
            decoded = np.frombuffer(_ZSTD.decode(data), dtype=np.uint8)
            if decoded.size != out.nbytes:
                raise ValueError(f"the frame decodes to {decoded.size} bytes, the chunk holds {out.nbytes}")
            out.view(np.uint8).reshape(-1)[:] = decoded
        elif size != out.nbytes:
            raise ValueError(f"the frame holds {size} bytes, the chunk holds {out.nbytes}")
        else:
            _ZSTD.decode(data, out=out)
    except (RuntimeError, TypeError) as err:
        raise ValueError(str(err)) from None
    return out


def _read(path: Path) -> memoryview:
    """The file's bytes, in this thread's reused buffer (valid until the thread's next read)."""
    with open(path, "rb") as handle:
        length = handle.seek(0, 2)
        handle.seek(0)
        buffer = getattr(_LOCAL, "buffer", None)
        if buffer is None or len(buffer) < length:
            buffer = _LOCAL.buffer = bytearray(length)
        view = memoryview(buffer)[:length]
        got = handle.readinto(view)
    return view[:got]
