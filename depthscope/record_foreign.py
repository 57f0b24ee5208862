"""Recording models depthscope did not build: `depthscope record --hf DIR` and `--model module:function`.

    model = load_hf_folder("models/tiny-llama")              # config + safetensors + tokenizer files, offline
    model = load_factory("mypkg.models:tiny", tokenizer="tok/")  # any importable function returning a module
    record_foreign(model, "pydoc", "runs/llama", tokens=20_000, grads=True)

The probe finds what to record by itself (`depthscope.probe.Probe(model)`: depthscope's taps, or the built-in
adapter for the model's library). The corpus (a name depthscope knows or a UTF-8 text file) is split by
document as for depthscope's own models and tokenised by the model's tokenizer; the run keeps that tokenizer's
vocabulary (vocabulary.json), so every view shows the real subword tokens.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from depthscope.models import ByteTokenizer, Corpus, load_corpus
from depthscope.probe import describe_tokenizer, encode, text_of_ids, vocab_size
from depthscope.record import RecordOptions, RecordResult, record_model, record_options


class ForeignModelError(ValueError):
    """A model folder, factory or tokenizer that cannot be loaded; the message names it and what is wrong."""


@dataclass
class ForeignModel:
    """A model to record, the tokenizer of its inputs, and where it came from (for the manifest)."""

    model: nn.Module
    tokenizer: Any  # a transformers / tokenizers tokenizer, or depthscope's ByteTokenizer
    source: dict = field(default_factory=dict)  # {"hf": folder} or {"factory": "module:function"}
    max_seq_len: int | None = None


class CorpusTokenizer:
    """Any tokenizer behind the interface depthscope's Corpus uses (encode_array, vocab_size)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size(tokenizer)

    def encode_array(self, text: str) -> np.ndarray:
        return encode(self.tokenizer, text)


# ------------------------------------------------------------------------------------------------ loading


def _max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_hf_folder(path: str | Path, device: str = "cpu") -> ForeignModel:
    """A local Hugging Face causal-LM folder (config.json, *.safetensors, tokenizer files), loaded offline
    without running any code from the folder (no trust_remote_code, no pickles)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ForeignModelError(f"--hf {folder}: not a directory (expected a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        raise ForeignModelError(f"--hf {folder}: no config.json (expected a Hugging Face model folder)")
    if not any(folder.glob("*.safetensors")):
        raise ForeignModelError(f"--hf {folder}: no *.safetensors weights (pickled weights are not loaded)")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ForeignModelError("--hf needs the `transformers` package (pip install transformers)") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except Exception as err:
        raise ForeignModelError(f"--hf {folder}: cannot load the model ({type(err).__name__}: {err})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as err:
        raise ForeignModelError(f"--hf {folder}: cannot load its tokenizer ({type(err).__name__}: {err})") from None
    return ForeignModel(model.to(device).eval(), tokenizer, {"hf": str(folder.resolve())},
                        _max_positions(model.config))


def load_tokenizer(spec: str | Path | None) -> Any:
    """None or "bytes": depthscope's UTF-8 byte tokenizer; a folder: its Hugging Face tokenizer (offline);
    a tokenizer.json file: a `tokenizers` tokenizer."""
    if spec is None or str(spec) == "bytes":
        return ByteTokenizer()
    path = Path(spec)
    if path.is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ForeignModelError("--tokenizer FILE needs the `tokenizers` package") from None
        try:
            return Tokenizer.from_file(str(path))
        except Exception as err:
            raise ForeignModelError(f"--tokenizer {path}: not a tokenizer.json ({err})") from None
    if not path.is_dir():
        raise ForeignModelError(f"--tokenizer {path}: no such file or folder (or say 'bytes')")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except ImportError:
        raise ForeignModelError("--tokenizer DIR needs the `transformers` package") from None
    except Exception as err:
        raise ForeignModelError(f"--tokenizer {path}: cannot load a tokenizer ({type(err).__name__}: {err})") from None


def load_factory(spec: str, tokenizer: str | Path | None = None, device: str = "cpu") -> ForeignModel:
    """`module:function`: import the module, call the function with no arguments. It returns an nn.Module,
    or (module, tokenizer). `tokenizer` (load_tokenizer's spec) overrides or supplies the tokenizer."""
    module_name, sep, function_name = str(spec).partition(":")
    if not sep or not module_name or not function_name:
        raise ForeignModelError(f"--model {spec!r}: expected module:function (e.g. mypkg.models:tiny)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ForeignModelError(f"--model {spec}: cannot import module {module_name!r} ({err})") from None
    factory = module
    for part in function_name.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ForeignModelError(f"--model {spec}: module {module_name!r} has no {function_name!r}")
    if not callable(factory):
        raise ForeignModelError(f"--model {spec}: {function_name!r} is not callable")
    made = factory()
    own_tokenizer = None
    if isinstance(made, tuple) and len(made) == 2:
        made, own_tokenizer = made
    if not isinstance(made, nn.Module):
        raise ForeignModelError(f"--model {spec}: returned {type(made).__name__}, expected a torch nn.Module "
                                "(or a (module, tokenizer) pair)")
    chosen = load_tokenizer(tokenizer) if tokenizer is not None or own_tokenizer is None else own_tokenizer
    config = getattr(made, "config", None) or getattr(made, "cfg", None)
    return ForeignModel(made.to(device).eval(), chosen, {"factory": str(spec)}, _max_positions(config))


# ------------------------------------------------------------------------------------------------ recording


def foreign_corpus(corpus: str | Path, tokenizer: Any, seed: int = 0, heldout_fraction: float = 0.05) -> Corpus:
    """A corpus by name or text file, split by document as for depthscope's models, tokenised by `tokenizer`."""
    text = load_corpus(corpus, seed=seed, heldout_fraction=heldout_fraction)
    if isinstance(tokenizer, ByteTokenizer):
        return Corpus(name=text.name, documents=text.documents, heldout_fraction=heldout_fraction, split_seed=seed)
    return Corpus(name=text.name, documents=text.documents, heldout_fraction=heldout_fraction, split_seed=seed,
                  tokenizer=CorpusTokenizer(tokenizer))


def record_foreign(
    foreign: ForeignModel,
    corpus: str | Path,
    out: str | Path,
    options: RecordOptions | None = None,
    *,
    data_seed: int = 0,
    heldout_fraction: float = 0.05,
    **changes,
) -> RecordResult:
    """Record `options.tokens` tokens of `corpus` through a foreign model into the run directory `out`;
    `changes`: RecordOptions fields given as keywords.

    seq_len defaults to min(256, the model's longest sequence). The run's manifest names the model's source,
    corpus, split, seed and tokenizer; vocabulary.json holds the tokenizer's text of every id.
    """
    opts = record_options(options, **changes)
    limit = foreign.max_seq_len
    seq_len = opts.seq_len or min(256, limit or 256)
    if limit is not None and seq_len > limit:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's longest sequence ({limit})")
    tokenizer = foreign.tokenizer
    text = foreign_corpus(corpus, tokenizer, seed=data_seed, heldout_fraction=heldout_fraction)
    meta: dict[str, Any] = {
        "source": foreign.source,
        "corpus": text.name,
        "split": opts.split,
        "seed": {"data": data_seed},
        "seq_len": seq_len,
        "batch_size": opts.batch_size,
        "loss": "cross-entropy of predicting the next token, per token",
        "grad_loss": "mean cross-entropy over the batch's tokens" if opts.grads else None,
    }
    if isinstance(tokenizer, ByteTokenizer):
        meta["tokenizer"] = tokenizer.to_dict()
    else:
        meta["tokenizer"] = describe_tokenizer(tokenizer)
        meta["vocabulary"] = text_of_ids(tokenizer)
    name = foreign.source.get("hf") or foreign.source.get("factory") or type(foreign.model).__name__
    return record_model(foreign.model, text, out, replace(opts, seq_len=seq_len), meta=meta,
                        name=Path(str(name)).name)


def describe(foreign: ForeignModel) -> str:
    """One line naming the model, its parameters and tokenizer (printed by the command)."""
    n = sum(p.numel() for p in foreign.model.parameters())
    tok = foreign.tokenizer
    tok_text = "UTF-8 bytes" if isinstance(tok, ByteTokenizer) else type(tok).__name__
    return f"{type(foreign.model).__name__} ({n:,} parameters), tokenizer {tok_text}"
