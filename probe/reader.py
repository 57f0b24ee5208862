"""Reading runs back: `open_run(path) -> Run`, lazily and chunk by chunk (format in SCHEMA.md).

    run = open_run("runs/x")
    run.status                      "complete" or "incomplete" (a killed recording: readable up to its last chunk)
    run.sublayers, run.sublayer_labels, run.source_labels, run.valid       the sublayer axis and its sources
    run.mixer_kind                  what its mixer kind allows (models.vocabulary.MixerKind)
    run.alpha[1000:2000]            numpy [tokens, sublayers, max_sources] (NaN beyond each row's sources)
    run.input_rms[:], run.loss[:]   numpy [tokens, sublayers] / [tokens]
    for chunk in run.iter_chunks(["alpha", "document"]):   # streaming: one chunk in memory at a time
        chunk.alpha, chunk.document, chunk.start, chunk.stop
    run.alpha.blocks(), run.alpha.read_block(i, out=buffer)  # stored chunk i, decoded into a reused buffer
    run.grad_norms                  DataFrame step, sublayer, label, grad_norm, n_params, rank
    run.summary                     dict of DataFrames (runs recorded with a summary), else None
    run.token_label(id), run.text()  how a token is shown (THE token label of depthscope), the recorded text

Every problem with the files (missing, truncated or corrupt chunk, wrong schema version, NaN weights for a
valid source) raises RunError naming the file and the problem. Shards (one per rank) read as one run, in
rank order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from depthscope.models import MixerKind, kind_of_model, token_label, token_labels

from .chunkfile import decode_into, plain_zstd
from .errors import RunError
from .layout import Layout
from .store import (
    FORMAT_NAME,
    GRAD_NORM_COLUMNS,
    GRAD_NORMS,
    MANIFEST,
    READABLE_SCHEMA_VERSIONS,
    SCHEMA_VERSION,
    SHARD_META,
    SUMMARY_DIR,
    VOCABULARY,
    VOCABULARY_FORMAT,
)

ARRAY_NAMES = ("alpha", "input_rms", "output_rms", "residual_rms", "grad_rms",
               "token", "document", "position", "step", "loss")


def _read_json(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(path, f"missing ({what})") from None
    except OSError as err:
        raise RunError(path, f"cannot read it ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(path, f"corrupt or truncated JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunError(path, "not a JSON object")
    return data


def _check_format(path: Path, data: dict) -> None:
    if data.get("format") != FORMAT_NAME:
        raise RunError(path, f"not a depthscope run (format is {data.get('format')!r}, expected {FORMAT_NAME!r})")
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise RunError(path, f"schema version {version!r} is not supported (this depthscope reads schema versions "
                             f"{readable}; it writes {SCHEMA_VERSION})")


@dataclass
class _Piece:
    """Tokens [start, stop) of the run live in `array` (one shard), from row 0."""

    start: int
    stop: int
    array: Any  # zarr.Array
    directory: Path  # the array's directory inside its shard
    plain: bool = False  # chunks are plain zstd frames: decoded straight from the files (chunkfile.py)


class LazyArray:
    """A per-token array of a run, read on demand: shape [tokens, ...], indexable like numpy along tokens.

    Indexing returns numpy. The first index selects tokens (int, slice, int array or bool mask); further
    indices apply to the rest. `iter_chunks()` streams (start, block) pairs one stored chunk at a time.
    """

    def __init__(self, name: str, pieces: list[_Piece], tail: tuple[int, ...], dtype: np.dtype,
                 chunk_tokens: int, valid: np.ndarray | None = None):
        self.name = name
        self._pieces = pieces
        self.n_tokens = pieces[-1].stop if pieces else 0
        self.shape = (self.n_tokens, *tail)
        self.dtype = np.dtype(dtype)
        self.chunk_tokens = chunk_tokens
        self._valid = valid  # alpha only: [sublayers, sources] where NaN is an error
        self._cache: tuple[Any, np.ndarray] | None = None

    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return f"LazyArray({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        data = self.read(0, self.n_tokens)
        return data if dtype is None else data.astype(dtype)

    def _chunk_file(self, piece: _Piece, index: int) -> Path:
        return piece.directory.joinpath("c", str(index), *(["0"] * (len(self.shape) - 1)))

    def _read_chunk(self, piece: _Piece, index: int) -> np.ndarray:
        """Stored chunk `index` of one shard, clipped to the flushed tokens; cached (one chunk)."""
        key = (id(piece), index)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        block = self._decode(piece, index, None, True)
        self._cache = (key, block)
        return block

    def _decode(self, piece: _Piece, index: int, out: np.ndarray | None, check: bool) -> np.ndarray:
        """Decode stored chunk `index` of one shard (into `out`, full chunk shape, when given) and clip it."""
        a = index * self.chunk_tokens
        b = min(a + self.chunk_tokens, piece.stop - piece.start)
        path = self._chunk_file(piece, index)
        try:
            if piece.plain:
                full = (self.chunk_tokens, *self.shape[1:])
                block = decode_into(path, np.empty(full, self.dtype) if out is None else out)[: b - a]
            else:
                block = np.asarray(piece.array[a:b])
        except Exception as err:
            raise RunError(path, f"truncated or corrupt chunk ({type(err).__name__}: {err})") from None
        if block.shape != (b - a, *self.shape[1:]):
            raise RunError(path, f"chunk holds shape {block.shape}, expected {(b - a, *self.shape[1:])}")
        if check and self._valid is not None:
            bad = _first_nan_token(block, self._valid)
            if bad is not None:
                raise RunError(path, f"NaN depth-attention weight for a valid source (token {piece.start + a + bad} "
                                     f"of the run)")
        return block

    def blocks(self) -> list[tuple[int, int]]:
        """Token ranges [start, stop) of the stored chunks, in order (the shards one after another)."""
        out = []
        for piece in self._pieces:
            for a in range(piece.start, piece.stop, self.chunk_tokens):
                out.append((a, min(a + self.chunk_tokens, piece.stop)))
        return out

    def read_block(self, number: int, out: np.ndarray | None = None, check: bool = True) -> np.ndarray:
        """Stored chunk `number` of blocks(), as [stop - start, ...] rows.

        out: a C-contiguous buffer of the full chunk shape [chunk_tokens, ...] and the array's dtype to decode
        into (the result is then a view of it, valid until the buffer is reused): streaming without a fresh
        allocation per chunk. check=False skips the NaN check of alpha, for callers that check the weights of
        valid sources themselves (and call read_block(number) again to raise the reader's error on a fault).
        Safe to call from several threads with different buffers."""
        starts = np.cumsum([0] + [-(-(p.stop - p.start) // self.chunk_tokens) for p in self._pieces])
        if not 0 <= number < starts[-1]:
            raise IndexError(f"block {number} out of range for {int(starts[-1])} stored chunks")
        k = int(np.searchsorted(starts, number, side="right")) - 1
        piece = self._pieces[k]
        full = (self.chunk_tokens, *self.shape[1:])
        if out is not None and (out.shape != full or out.dtype != self.dtype or not out.flags.c_contiguous):
            raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {full}")
        return self._decode(piece, number - int(starts[k]), out, check)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as one numpy array."""
        start, stop = max(0, start), min(stop, self.n_tokens)
        parts = []
        for piece in self._pieces:
            lo, hi = max(start, piece.start), min(stop, piece.stop)
            if lo >= hi:
                continue
            first, last = (lo - piece.start) // self.chunk_tokens, (hi - 1 - piece.start) // self.chunk_tokens
            for index in range(first, last + 1):
                base = piece.start + index * self.chunk_tokens
                block = self._read_chunk(piece, index)
                parts.append(block[max(lo - base, 0): hi - base])
        if not parts:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.n_tokens if key < 0 else 0)
            if not 0 <= index < self.n_tokens:
                raise IndexError(f"token {key} out of range for {self.n_tokens} tokens")
            out = self.read(index, index + 1)[0]
        elif isinstance(key, slice):
            start, stop, step = key.indices(self.n_tokens)
            if step > 0:
                out = self.read(start, stop)[::step] if start < stop else self.read(0, 0)
            else:
                out = self.read(stop + 1, start + 1)[::-1][:: -step] if stop < start else self.read(0, 0)
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (self.n_tokens,):
                    raise IndexError(f"boolean token mask of shape {index.shape}, expected {(self.n_tokens,)}")
                index = np.nonzero(index)[0]
            index = np.where(index < 0, index + self.n_tokens, index).astype(np.int64)
            if index.size and (index.min() < 0 or index.max() >= self.n_tokens):
                raise IndexError(f"token index out of range for {self.n_tokens} tokens")
            out = np.empty((index.size, *self.shape[1:]), dtype=self.dtype)
            order = np.argsort(index, kind="stable")
            sorted_index = index[order]
            chunk_of = sorted_index // self.chunk_tokens
            for c in np.unique(chunk_of):
                sel = order[chunk_of == c]
                lo = int(c) * self.chunk_tokens
                block = self.read(lo, lo + self.chunk_tokens)
                out[sel] = block[index[sel] - lo]
        if rest:
            scalar = isinstance(key, (int, np.integer))
            out = out[rest] if scalar else out[(slice(None), *rest)]
        return out

    def iter_chunks(self, chunk_tokens: int | None = None, start: int = 0, stop: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """(first token, block) pairs covering [start, stop), `chunk_tokens` tokens at a time."""
        size = chunk_tokens or self.chunk_tokens
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        for a in range(start, stop, size):
            yield a, self.read(a, min(a + size, stop))


# per float width: (the integer view, |x| mask, the bits of +inf): x is NaN iff (bits & mask) > inf
_NAN_BITS = {2: (np.uint16, 0x7FFF, 0x7C00), 4: (np.uint32, 0x7FFFFFFF, 0x7F800000),
             8: (np.uint64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000)}


def _first_nan_token(block: np.ndarray, valid: np.ndarray) -> int | None:
    """The first token (row) of block [T, sublayers, sources] with a NaN at a valid source, else None.

    Fast path: the largest |x| bit pattern per (sublayer, source) column over the tokens (NaN patterns lie
    above +inf's); np.isnan over the valid entries would copy them and cost about ten times more."""
    if len(block) == 0:
        return None
    kind = _NAN_BITS.get(block.dtype.itemsize) if block.dtype.kind == "f" and block.flags.c_contiguous else None
    if kind is not None:
        view, mask, inf = kind
        top = np.bitwise_and(block.view(view), view(mask)).reshape(len(block), -1).max(axis=0)
        if not (top.reshape(valid.shape)[valid] > inf).any():
            return None
    rows = np.isnan(block[:, valid]).any(-1)
    return int(np.nonzero(rows)[0][0]) if rows.any() else None


class Chunk(dict):
    """One block of consecutive tokens: `chunk.start`, `chunk.stop` and each requested array by name."""

    def __init__(self, start: int, stop: int, arrays: dict[str, np.ndarray]):
        super().__init__(arrays)
        self.start, self.stop = start, stop

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:  # number of tokens, not of arrays
        return self.stop - self.start


class Run:
    """A run directory opened for reading. See the module docstring and SCHEMA.md.

    Attributes:
      path, manifest (the parsed manifest.json), schema_version, mode ("capture" or "summary"),
      status ("complete" only when the manifest and every shard say so), complete (bool),
      model (kind, class, config, properties), mixer_kind (MixerKind), layout (Layout), sublayers (1-based ids of the sublayer axis; L + 1 is
      the final mixer), sublayer_labels, source_labels (per sublayer-axis position), n_sources [sublayers],
      valid [sublayers, max_sources] bool, max_sources, n_tokens (readable tokens), shard_tokens (per shard),
      captured (names of the per-token arrays present), arrays (name -> LazyArray), chunk_tokens,
      vocabulary (the text of each token id, from vocabulary.json; None for byte-level runs), byte_level
      (token ids are UTF-8 bytes), vocab_size.
    Per-token arrays as attributes: alpha, input_rms, output_rms, residual_rms, grad_rms, token, document,
    position, step, loss (a RunError if the run did not capture it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise RunError(self.path, "no such run directory")
        if not self.path.is_dir():
            raise RunError(self.path, "not a directory (a run is a directory holding manifest.json)")
        manifest_path = self.path / MANIFEST
        self.manifest = _read_json(manifest_path, "not a run, or a run that has not started writing")
        _check_format(manifest_path, self.manifest)
        try:
            self.layout = Layout.from_dict(self.manifest)
            self.chunk_tokens = int(self.manifest["chunk_tokens"])
            shard_names = [str(s) for s in self.manifest["shards"]]
            specs = dict(self.manifest["arrays"])
        except (KeyError, TypeError, ValueError) as err:
            raise RunError(manifest_path, f"incomplete manifest ({type(err).__name__}: {err})") from None
        self.schema_version = int(self.manifest["schema_version"])
        self.mode = str(self.manifest.get("mode", "capture"))
        self.model = self.manifest.get("model", {})
        self._specs = specs
        self._shards: list[tuple[Path, dict]] = []
        statuses = [self.manifest.get("status")]
        for name in shard_names:
            directory = self.path / name
            meta_path = directory / SHARD_META
            if not meta_path.exists():
                if self.manifest.get("status") == "complete":
                    raise RunError(meta_path, "missing (the manifest says the run is complete)")
                statuses.append("missing")
                continue
            meta = _read_json(meta_path, "shard description")
            _check_format(meta_path, meta)
            if not isinstance(meta.get("tokens"), int) or meta["tokens"] < 0:
                raise RunError(meta_path, f"bad token count {meta.get('tokens')!r}")
            statuses.append(meta.get("status"))
            self._shards.append((directory, meta))
        self.status = "complete" if all(s == "complete" for s in statuses) else "incomplete"
        self.shard_tokens = [meta["tokens"] for _, meta in self._shards]
        self.n_tokens = int(sum(self.shard_tokens))
        self.arrays: dict[str, LazyArray] = {}
        for name, spec in specs.items():
            self.arrays[name] = self._open_array(name, spec)
        self.vocabulary: list[str] | None = _read_vocabulary(self.path, self.manifest)
        self.byte_level = self.vocabulary is None and _is_bytes(self.manifest)

    # ------------------------------------------------------------------------------------------- layout

    complete = property(lambda self: self.status == "complete")

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the run was recorded from (a relative path in the manifest is relative to the run)."""
        named = self.manifest.get("checkpoint")
        return (self.path / named).resolve() if named else None
    sublayers = property(lambda self: list(self.layout.sublayers))
    sublayer_labels = property(lambda self: list(self.layout.sublayer_labels))
    source_labels = property(lambda self: [list(x) for x in self.layout.source_labels])

    @property
    def mixer_kind(self) -> MixerKind:
        """What the run's mixer kind allows (non-negative weights, unit of distance, causal check, ...): as the
        manifest wrote it, or for runs recorded before it did, from models.vocabulary's table by mixer name."""
        return kind_of_model(self.model if isinstance(self.model, dict) else None, self.layout.source_labels)
    n_sources = property(lambda self: self.layout.n_sources)
    valid = property(lambda self: self.layout.valid)
    max_sources = property(lambda self: self.layout.max_sources)
    captured = property(lambda self: tuple(self.arrays))

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, status={self.status}, mode={self.mode}, tokens={self.n_tokens}, "
                f"sublayers={len(self.layout.sublayers)}, arrays={list(self.arrays)})")

    def _open_array(self, name: str, spec: dict) -> LazyArray:
        import zarr

        tail = tuple(int(x) for x in spec.get("tail", []))
        dtype = np.dtype(spec["dtype"])
        pieces, offset = [], 0
        for directory, meta in self._shards:
            tokens = meta["tokens"]
            array_dir = directory / name
            if not (array_dir / "zarr.json").exists():
                raise RunError(array_dir / "zarr.json", f"missing (the manifest lists array {name!r})")
            try:
                array = zarr.open_array(str(array_dir), mode="r")
            except Exception as err:
                raise RunError(array_dir / "zarr.json", f"unreadable Zarr array metadata ({err})") from None
            if tuple(array.shape[1:]) != tail or np.dtype(array.dtype) != dtype:
                raise RunError(
                    array_dir / "zarr.json",
                    f"array {name!r} has shape {tuple(array.shape)} and dtype {array.dtype}; the manifest says "
                    f"[tokens, {', '.join(map(str, tail))}] {dtype} (schema mismatch)",
                )
            if tuple(array.chunks)[0] != self.chunk_tokens:
                raise RunError(array_dir / "zarr.json", f"chunks of {array.chunks[0]} tokens, manifest says {self.chunk_tokens}")
            if array.shape[0] < tokens:
                raise RunError(array_dir / "zarr.json",
                               f"holds {array.shape[0]} tokens but {SHARD_META} says {tokens} were written (truncated)")
            for index in range(-(-tokens // self.chunk_tokens)):
                chunk = array_dir.joinpath("c", str(index), *(["0"] * len(tail)))
                if not chunk.is_file():
                    raise RunError(chunk, f"missing chunk {index} of array {name!r}")
                if chunk.stat().st_size == 0:
                    raise RunError(chunk, f"empty (truncated) chunk {index} of array {name!r}")
            if tokens:
                plain = plain_zstd(array.metadata.to_dict(), dtype)
                pieces.append(_Piece(offset, offset + tokens, array, array_dir, plain))
            offset += tokens
        valid = self.layout.valid if name == "alpha" else None
        return LazyArray(name, pieces or [_Piece(0, 0, None, self.path)], tail, dtype, self.chunk_tokens, valid)

    def __getattr__(self, name: str) -> LazyArray:
        if name in ARRAY_NAMES:
            arrays = self.__dict__.get("arrays", {})
            if name in arrays:
                return arrays[name]
            raise RunError(self.__dict__.get("path", Path(".")) / MANIFEST,
                           f"this run did not capture {name!r} (it holds {list(arrays) or 'no per-token arrays'})")
        raise AttributeError(name)

    # ------------------------------------------------------------------------------------------- streaming

    def iter_chunks(self, names: Sequence[str] | None = None, chunk_tokens: int | None = None,
                    start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Consecutive blocks of tokens with the named arrays (default: all), one block in memory at a time."""
        names = list(self.arrays) if names is None else list(names)
        for name in names:
            getattr(self, name)  # a clear error for arrays the run lacks
        size = chunk_tokens or self.chunk_tokens
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        for a in range(start, stop, size):
            b = min(a + size, stop)
            yield Chunk(a, b, {name: self.arrays[name].read(a, b) for name in names})

    def validate(self) -> "Run":
        """Read every chunk of every array once (checksums, shapes, NaN weights); raise RunError on a fault."""
        for array in self.arrays.values():
            for _ in array.iter_chunks():
                pass
        self.grad_norms  # noqa: B018 - reads the tables
        return self

    # ------------------------------------------------------------------------------------------- tables

    @property
    def grad_norms(self) -> pd.DataFrame:
        """Per-step parameter-gradient norms: step, sublayer, label, grad_norm, n_params, rank."""
        frames = []
        for directory, _ in self._shards:
            for part in sorted((directory / GRAD_NORMS).glob("part-*.parquet")):
                try:
                    frames.append(pd.read_parquet(part))
                except Exception as err:
                    raise RunError(part, f"unreadable Parquet table ({type(err).__name__}: {err})") from None
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                GRAD_NORM_COLUMNS, ("int64", "int64", "object", "float64", "int64", "int64"))})
        return pd.concat(frames, ignore_index=True)

    def load_summary(self):
        """The run's Summary object (mergeable), or None when the run kept none."""
        from .summary import Summary

        directory = self.path / SUMMARY_DIR
        if not directory.is_dir():
            if self.manifest.get("summary") and self.complete:
                raise RunError(directory, "missing (the manifest says the run kept summaries)")
            return None
        return Summary.load(directory)

    @property
    def summary(self) -> dict[str, pd.DataFrame] | None:
        """The running summaries as tidy DataFrames (see depthscope.probe.summary), or None."""
        summary = self.load_summary()
        return None if summary is None else summary.to_frames()

    # ------------------------------------------------------------------------------------------- tokens

    @property
    def vocab_size(self) -> int | None:
        """Number of token ids: 256 for byte-level runs, the vocabulary's size, else the model config's
        vocab_size; None when unknown."""
        if self.vocabulary is not None:
            return len(self.vocabulary)
        if self.byte_level:
            return 256
        size = (self.model.get("config") or {}).get("vocab_size") if isinstance(self.model, dict) else None
        return int(size) if isinstance(size, int) and size > 0 else None

    def token_label(self, token: int) -> str:
        """How token id `token` is shown wherever depthscope shows a token (Routing, Tokens, tables, export)
        and what the dashboard's text filter matches: the definition of a token label (see token_label)."""
        return token_label(int(token), self.vocabulary, self.byte_level)

    def token_labels(self, ids) -> list[str]:
        """token_label of each id."""
        return token_labels(np.asarray(ids).reshape(-1).tolist(), self.vocabulary, self.byte_level)

    def text(self, start: int = 0, stop: int | None = None) -> str:
        """The recorded tokens [start, stop) as text (UTF-8 bytes decoded, or each id's text joined)."""
        ids = self.token[start:stop]
        vocabulary = self.vocabulary
        if vocabulary is not None:
            return "".join(vocabulary[i] if 0 <= i < len(vocabulary) else "" for i in ids.tolist())
        if not self.byte_level:
            kind = (self.manifest.get("tokenizer") or {}).get("kind")
            raise RunError(self.path / MANIFEST, f"cannot decode tokens of tokenizer {kind!r} (no {VOCABULARY})")
        return bytes(int(i) & 0xFF for i in ids if i >= 0).decode("utf-8", errors="replace")

    def tokens_frame(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        """One row per token in [start, stop): index, token, char (its label), document, position, step, loss."""
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        frame = pd.DataFrame({"index": np.arange(start, stop)})
        for name in ("token", "document", "position", "step", "loss"):
            if name in self.arrays:
                frame[name] = self.arrays[name][start:stop]
        if "token" in frame:
            frame["char"] = self.token_labels(frame["token"].to_numpy())
        return frame


def _is_bytes(manifest: dict) -> bool:
    """Byte-level token ids: the tokenizer says so; or it is not named and the run is of schema version 1 (they
    all are) or of a model whose config has depthscope's byte vocabulary."""
    kind = (manifest.get("tokenizer") or {}).get("kind")
    if kind is not None:
        return kind == "bytes-utf8"
    config = (manifest.get("model") or {}).get("config") or {}
    return manifest.get("schema_version") == 1 or config.get("vocab_size") == 256


def _read_vocabulary(path: Path, manifest: dict) -> list[str] | None:
    named = manifest.get("vocabulary")
    if not named:
        return None
    file = path / VOCABULARY
    data = _read_json(file, "the run's vocabulary, named in manifest.json")
    tokens = data.get("tokens")
    if data.get("format") != VOCABULARY_FORMAT or not isinstance(tokens, list) \
            or not all(isinstance(t, str) for t in tokens):
        raise RunError(file, f"not a depthscope vocabulary (format {data.get('format')!r}, expected "
                             f"{VOCABULARY_FORMAT!r}, and a list of strings under 'tokens')")
    size = named.get("size") if isinstance(named, dict) else None
    if size is not None and size != len(tokens):
        raise RunError(file, f"holds {len(tokens)} tokens; manifest.json says {size}")
    return tokens


def open_run(path: str | Path) -> Run:
    """Open the run directory at `path` for reading (RunError names the file if anything is wrong)."""
    return Run(path)
