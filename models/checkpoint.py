"""Checkpoints as a directory: `model.safetensors` (the state dict) + `checkpoint.json` (everything else).

checkpoint.json holds the format name and version, `ModelConfig.to_dict()`, the tokeniser, a training summary
and the size and SHA-256 of model.safetensors. Loading never unpickles: tensors come from safetensors, the rest
from JSON. Saving is atomic per file (temporary name, fsync, os.replace) and ordered so that a crash part-way
never leaves a directory that looks complete: an old checkpoint.json is removed first and the new one is written
last, and the recorded hash ties the JSON to exactly the tensors it was written with.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .atomic import atomic_write as _atomic_write
from .atomic import json_safe
from .config import ModelConfig
from .data import ByteTokenizer
from .transformer import DepthTransformer
from .version import __version__

FORMAT_NAME = "depthscope-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded; the message names the file and what is wrong with it."""


@dataclass
class CheckpointInfo:
    """What checkpoint.json says, parsed. `training` is the summary dict written by the trainer."""

    path: Path
    config: ModelConfig
    tokenizer: ByteTokenizer
    training: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    depthscope_version: str = ""
    raw: dict = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: DepthTransformer,
    directory: str | Path,
    training: dict | None = None,
    tokenizer: ByteTokenizer | None = None,
    storage_dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` (its cfg and state dict) to `directory` (created if needed); return the directory.

    storage_dtype (e.g. torch.float16) stores floating-point tensors in that precision, halving the file for
    shipping; loading converts them back to the model's dtype."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path, meta_path = directory / WEIGHTS_FILE, directory / META_FILE
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()}
    if storage_dtype is not None:
        tensors = {name: t.to(storage_dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    payload = save(tensors, metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    # An old checkpoint.json must not survive next to new weights: without it the directory reads incomplete.
    try:
        meta_path.unlink()
    except FileNotFoundError:
        pass
    _atomic_write(weights_path, lambda handle: handle.write(payload))
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "depthscope_version": __version__,
        "model_config": model.cfg.to_dict(),
        "tokenizer": (tokenizer or ByteTokenizer()).to_dict(),
        "weights": {"file": WEIGHTS_FILE, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
        "training": json_safe(dict(training or {})),
    }
    text = json.dumps(meta, indent=1, allow_nan=False) + "\n"
    _atomic_write(meta_path, lambda handle: handle.write(text.encode("utf-8")))
    return directory


def read_checkpoint_info(directory: str | Path) -> CheckpointInfo:
    """Parse and validate checkpoint.json (and that model.safetensors exists and matches its recorded hash)."""
    directory = Path(directory)
    if directory.is_file() and directory.name in (WEIGHTS_FILE, META_FILE):
        directory = directory.parent
    if not directory.exists():
        raise CheckpointError(f"checkpoint {directory}: no such directory")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory}: not a directory (expected {META_FILE} + {WEIGHTS_FILE})")
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{meta_path}: missing (an incomplete or non-checkpoint directory)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta_path}: corrupt or truncated JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{meta_path}: not a depthscope checkpoint (format is not {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: format version {version!r} is not supported (this depthscope reads {FORMAT_VERSION})"
        )
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: bad model_config ({err})") from None
    try:
        tokenizer = ByteTokenizer.from_dict(meta.get("tokenizer"))
    except ValueError as err:
        raise CheckpointError(f"{meta_path}: bad tokenizer ({err})") from None
    if config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{meta_path}: model vocab_size {config.vocab_size} != tokenizer vocab_size {tokenizer.vocab_size}"
        )
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    recorded = meta.get("weights") or {}
    size = weights_path.stat().st_size
    if recorded.get("bytes") is not None and recorded["bytes"] != size:
        raise CheckpointError(
            f"{weights_path}: {size} bytes, but {META_FILE} recorded {recorded['bytes']} (truncated or replaced)"
        )
    if recorded.get("sha256") and recorded["sha256"] != _sha256(weights_path):
        raise CheckpointError(f"{weights_path}: contents do not match the SHA-256 recorded in {META_FILE}")
    return CheckpointInfo(
        path=directory,
        config=config,
        tokenizer=tokenizer,
        training=meta.get("training") or {},
        format_version=version,
        depthscope_version=str(meta.get("depthscope_version", "")),
        raw=meta,
    )


def _read_tensors(weights_path: Path) -> dict[str, torch.Tensor]:
    """safetensors only: a file in any other format (a pickle included) fails here and is never executed."""
    from safetensors.torch import load

    data = weights_path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{weights_path}: truncated ({len(data)} bytes, not a safetensors file)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data) or data[8:9] != b"{":
        raise CheckpointError(f"{weights_path}: not a safetensors file (bad header; a pickle or a truncated file?)")
    try:
        return load(data)
    except Exception as err:  # safetensors raises its own SafetensorError and others for bad input
        raise CheckpointError(f"{weights_path}: corrupt safetensors data ({err})") from None


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[DepthTransformer, CheckpointInfo]:
    """Rebuild the model from checkpoint.json and fill it from model.safetensors; the model is in eval mode."""
    info = read_checkpoint_info(directory)
    weights_path = info.path / WEIGHTS_FILE
    tensors = _read_tensors(weights_path)
    model = DepthTransformer(info.config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) {unexpected[:5]}")
        raise CheckpointError(f"{weights_path}: does not match the model config in {META_FILE}: {'; '.join(parts)}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{weights_path}: tensor {name} has shape {tuple(tensor.shape)}, the config in {META_FILE} "
                f"needs {tuple(expected[name].shape)}"
            )
        lower_precision = tensor.is_floating_point() and expected[name].is_floating_point()
        if tensor.dtype != expected[name].dtype and not lower_precision:
            raise CheckpointError(
                f"{weights_path}: tensor {name} has dtype {tensor.dtype}, expected {expected[name].dtype}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_path}: tensor {name} holds NaN or infinite values")
    # Weights stored in a lower precision (save_checkpoint's storage_dtype) are converted to the model's dtype.
    model.load_state_dict(tensors, strict=True)
    model.to(device)
    model.eval()
    return model, info


def find_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint directories under `root` (itself and step_XXXXXX/ children), intermediate steps first."""
    root = Path(root)
    found = sorted(p for p in root.glob("step_*") if (p / META_FILE).is_file())
    if (root / META_FILE).is_file():
        found.append(root)
    return found


__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "META_FILE",
    "CheckpointError",
    "CheckpointInfo",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_info",
    "find_checkpoints",
]
