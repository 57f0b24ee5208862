"""The run writer: streams batch records into a run directory (format in SCHEMA.md).

    run/
      manifest.json              what was recorded and how; status "incomplete" until the atomic final rename
      shard-00000/               one shard per writer (per rank when distributed)
        zarr.json                Zarr v3 group
        shard.json               rank, status, `tokens` fully flushed (updated atomically after each chunk)
        alpha/ input_rms/ ...    Zarr v3 arrays, chunked along tokens, zstd with checksums
        grad_norms/part-*.parquet   per-step parameter-gradient norms (tidy), one part per flush
      summary/*.parquet          running summaries (when a Summary is attached)
      vocabulary.json            the text of every token id, for tokenizers other than UTF-8 bytes

Streaming: one chunk of `chunk_tokens` rows per array is buffered, then appended to the Zarr arrays; memory does
not grow with the number of tokens. Crash safety: shard.json's `tokens` only counts whole chunks written (and
a final short chunk at close), so a reader stops there; manifest.json and shard.json are replaced atomically
(temporary file, fsync, rename); status becomes "complete" last.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from depthscope.models import __version__, atomic_write, json_safe, kind_of_model

from .batch import SUBLAYER_FIELDS, TOKEN_DTYPES, TOKEN_FIELDS, BatchRecord
from .errors import RunError
from .layout import Layout

FORMAT_NAME = "depthscope-run"
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)  # 1: no vocabulary.json (every run of schema 1 is byte-level or has no tokens)
MANIFEST = "manifest.json"
VOCABULARY = "vocabulary.json"
VOCABULARY_FORMAT = "depthscope-vocabulary"
SHARD_META = "shard.json"
GRAD_NORMS = "grad_norms"
SUMMARY_DIR = "summary"
DEFAULT_CHUNK_TOKENS = 8192
GRAD_NORM_COLUMNS = ("step", "sublayer", "label", "grad_norm", "n_params", "rank")

ARRAY_DOCS = {
    "alpha": "depth-attention weight of each source, NaN beyond the sublayer's valid sources",
    "input_rms": "RMS over d_model of the sublayer input h_l",
    "output_rms": "RMS over d_model of the sublayer output f_l",
    "residual_rms": "RMS over d_model of the residual stream x_l after sublayer l (models that keep one)",
    "grad_rms": "RMS over d_model of dLoss/dh_l (the gradient of the loss at the sublayer input)",
    "token": "token id (-1 if unknown)",
    "document": "document id (-1 if unknown)",
    "position": "position of the token inside its document (or its sequence when no document is given)",
    "step": "training step (or batch counter) at which the token was recorded",
    "loss": "per-token LM loss (cross-entropy of predicting the next token), NaN if not computed",
}


def shard_name(rank: int) -> str:
    return f"shard-{rank:05d}"


def atomic_write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (readers see the old file or the new one)."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))


def code_version() -> str:
    """depthscope's version, plus the git commit of its source tree when it is a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def array_specs(layout: Layout) -> dict[str, dict]:
    """name -> {dtype, dims, tail shape, fill} of every per-token array a run with this layout holds."""
    n, sources = layout.n_slots, layout.max_sources
    specs: dict[str, dict] = {}
    for name in TOKEN_FIELDS:
        dtype = np.dtype(TOKEN_DTYPES[name])
        specs[name] = {"dtype": dtype.name, "dims": ["token"], "tail": [],
                       "fill": "NaN" if dtype.kind == "f" else -1}
    if "alpha" in layout.quantities:
        specs["alpha"] = {"dtype": layout.alpha_dtype, "dims": ["token", "sublayer", "source"],
                          "tail": [n, sources], "fill": "NaN"}
    for name in SUBLAYER_FIELDS:
        if name in layout.quantities:
            specs[name] = {"dtype": "float32", "dims": ["token", "sublayer"], "tail": [n], "fill": "NaN"}
    for name, spec in specs.items():
        spec["doc"] = ARRAY_DOCS[name]
    return specs


class RunWriter:
    """Streams batch records into a run directory; a sink for Probe (begin / write / close).

    path: the run directory (created). chunk_tokens: rows per Zarr chunk and per flush. arrays: False records
    no per-token arrays (summary-only runs keep the manifest, grad-norm table and summaries). rank, world_size:
    this writer's shard (default: from torch.distributed when initialised, else 0 of 1). overwrite: replace an
    existing run at `path`; otherwise an existing run is an error. meta: extra manifest fields.
    vocabulary: the text of each token id (index = id) for a tokenizer other than UTF-8 bytes, written to
    vocabulary.json so that readers show real tokens; it may also come as the meta field "vocabulary".
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        arrays: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        overwrite: bool = False,
        meta: dict | None = None,
        summary: Any = None,
        vocabulary: Sequence[str] | None = None,
    ):
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        self.path = Path(path)
        self.chunk_tokens = int(chunk_tokens)
        self.arrays_enabled = bool(arrays)
        self.rank, self.world_size = rank, world_size
        self.overwrite = overwrite
        self.meta = dict(meta or {})
        self.summary = summary
        self.vocabulary = None if vocabulary is None else [str(t) for t in vocabulary]
        self.tokens_flushed = 0
        self.max_buffered = 0  # most rows ever held in the chunk buffer (a memory bound, checked by tests)
        self._open = False

    # ------------------------------------------------------------------------------------------- begin

    def _ranks(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            try:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    rank = dist.get_rank() if rank is None else rank
                    world = dist.get_world_size() if world is None else world
            except Exception:  # pragma: no cover
                pass
        rank, world = int(rank or 0), int(world or 1)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        return rank, world

    def begin(self, layout: Layout, meta: dict) -> None:
        import zarr
        from zarr.codecs import ZstdCodec

        self.layout = layout
        self.rank, self.world_size = self._ranks()
        self.path.mkdir(parents=True, exist_ok=True)
        manifest_path = self.path / MANIFEST
        self.shard_dir = self.path / shard_name(self.rank)
        if self.rank == 0 and manifest_path.exists() or self.shard_dir.exists():
            if not self.overwrite:
                raise RunError(self.path, "a run already exists here (pass overwrite=True, or --overwrite)")
            self._clear_old()
        self.shard_dir.mkdir(parents=True)
        specs = array_specs(layout) if self.arrays_enabled else {}
        self.manifest = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "status": "incomplete",
            "mode": "capture" if self.arrays_enabled else "summary",
            "created": _now(),
            "finished": None,
            "code_version": code_version(),
            "world_size": self.world_size,
            "shards": [shard_name(r) for r in range(self.world_size)],
            "chunk_tokens": self.chunk_tokens,
            **layout.to_dict(),
            "sublayer_axis": (
                "position i of every sublayer axis holds the 1-based sublayer `sublayers[i]`; sublayers 1..L are "
                "the attention and MLP sublayers, L + 1 the final mixer feeding the LM head (where it exists)"
            ),
            "arrays": specs,
            "tables": {GRAD_NORMS: list(GRAD_NORM_COLUMNS)} if layout.grads else {},
            "summary": self.summary is not None,
        }
        extra = {**meta, **self.meta}
        vocabulary = self.vocabulary if self.vocabulary is not None else extra.pop("vocabulary", None)
        extra.pop("vocabulary", None)
        for key, value in extra.items():
            if key in ("format", "schema_version", "status"):
                continue
            self.manifest[key] = json_safe(value)
        model = self.manifest.get("model")
        if isinstance(model, dict) and "properties" not in model:
            # what the mixer kind allows, declared once in models.vocabulary, travels with the run
            model["properties"] = kind_of_model(model, layout.source_labels).to_dict()
        if vocabulary is not None:
            vocabulary = [str(t) for t in vocabulary]
            self.manifest["vocabulary"] = {"file": VOCABULARY, "size": len(vocabulary)}
        if self.rank == 0:
            if vocabulary is not None:  # before the manifest that names it
                atomic_write_json(self.path / VOCABULARY, {"format": VOCABULARY_FORMAT, "size": len(vocabulary),
                                                           "tokens": vocabulary})
            atomic_write_json(manifest_path, self.manifest)
        group = zarr.open_group(str(self.shard_dir), mode="w", zarr_format=3)
        group.attrs["depthscope"] = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "rank": self.rank}
        codec = ZstdCodec(level=0, checksum=True)
        self._zarr: dict[str, Any] = {}
        self._buffers: dict[str, np.ndarray] = {}
        for name, spec in specs.items():
            tail = tuple(spec["tail"])
            fill = float("nan") if spec["fill"] == "NaN" else spec["fill"]
            self._zarr[name] = group.create_array(
                name, shape=(0, *tail), chunks=(self.chunk_tokens, *tail), dtype=spec["dtype"],
                fill_value=fill, compressors=codec, dimension_names=spec["dims"],
                config={"write_empty_chunks": True},
            )
            self._buffers[name] = np.empty((self.chunk_tokens, *tail), dtype=spec["dtype"])
        self._filled = 0
        self._chunks = 0
        self._grad_rows: list[dict] = []
        self._grad_parts = 0
        self._write_shard_meta("incomplete")
        self._open = True

    def _clear_old(self) -> None:
        if self.shard_dir.exists():
            shutil.rmtree(self.shard_dir)
        if self.rank == 0:
            for entry in self.path.iterdir():
                if entry.name in (MANIFEST, VOCABULARY):
                    entry.unlink()
                elif entry.name == SUMMARY_DIR and entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.name.startswith("shard-") and entry.is_dir() and entry.name >= shard_name(self.world_size):
                    shutil.rmtree(entry)

    def _write_shard_meta(self, status: str) -> None:
        atomic_write_json(self.shard_dir / SHARD_META, {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "rank": self.rank,
            "status": status,
            "tokens": self.tokens_flushed,
            "chunks": self._chunks,
            "grad_norm_parts": self._grad_parts,
            "updated": _now(),
        })

    # ------------------------------------------------------------------------------------------- write

    def write(self, record: BatchRecord) -> None:
        if not self._open:
            raise RunError(self.path, "the run writer is not open (begin() was not called, or it is closed)")
        if record.grad_norms is not None:
            norms = record.grad_norms.detach().cpu().numpy()
            for i, (sublayer, label) in enumerate(zip(self.layout.sublayers, self.layout.sublayer_labels)):
                if np.isfinite(norms[i]):
                    self._grad_rows.append({
                        "step": record.step, "sublayer": sublayer, "label": label, "grad_norm": float(norms[i]),
                        "n_params": self.layout.n_params[i] if self.layout.n_params else 0, "rank": self.rank,
                    })
        if not self._zarr:
            return
        flat = record.flat()
        rows = record.n_tokens
        offset = 0
        while offset < rows:
            take = min(rows - offset, self.chunk_tokens - self._filled)
            for name, buffer in self._buffers.items():
                buffer[self._filled:self._filled + take] = flat[name][offset:offset + take]
            self._filled += take
            offset += take
            self.max_buffered = max(self.max_buffered, self._filled)
            if self._filled == self.chunk_tokens:
                self._flush()

    def _flush(self) -> None:
        """Append the buffered rows to every array, then (only then) count them in shard.json."""
        if self._filled:
            for name, array in self._zarr.items():
                array.append(self._buffers[name][: self._filled], axis=0)
            self.tokens_flushed += self._filled
            self._chunks += 1
            self._filled = 0
        self._flush_grad_rows()
        self._write_shard_meta("incomplete")

    def _flush_grad_rows(self) -> None:
        if not self._grad_rows:
            return
        directory = self.shard_dir / GRAD_NORMS
        directory.mkdir(exist_ok=True)
        frame = pd.DataFrame(self._grad_rows, columns=list(GRAD_NORM_COLUMNS))
        atomic_write_parquet(directory / f"part-{self._grad_parts:05d}.parquet", frame)
        self._grad_parts += 1
        self._grad_rows = []

    # ------------------------------------------------------------------------------------------- close

    def close(self, ok: bool = True) -> None:
        """Flush what is buffered (whole batches only ever reach the buffer); mark complete when ok."""
        if not self._open:
            return
        self._open = False
        self._flush()
        if not ok:
            return  # status stays "incomplete"; everything written so far is readable
        if self.summary is not None:
            self._save_summary()
        self._write_shard_meta("complete")
        if self.world_size > 1:
            try:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    dist.barrier()
            except Exception:  # pragma: no cover
                pass
        if self.rank == 0:
            self.manifest["status"] = "complete"
            self.manifest["finished"] = _now()
            atomic_write_json(self.path / MANIFEST, self.manifest)

    def _save_summary(self) -> None:
        summary = self.summary
        if self.world_size > 1 and not getattr(summary, "reduced", False):
            try:
                import torch.distributed as dist

                if dist.is_available() and dist.is_initialized():
                    summary.all_reduce()
            except ImportError:  # pragma: no cover
                pass
        if self.rank == 0:
            summary.save(self.path / SUMMARY_DIR)
