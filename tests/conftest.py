"""Shared pytest setup for depthscope's tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # dash[testing] drives the system Chromium; with no display (CI, ssh) it can only run headless.
    if not os.environ.get("DISPLAY") and hasattr(config.option, "headless"):
        config.option.headless = True


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The source checkout (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The bin/ folder of the interpreter running the tests (where console scripts are installed)."""
    return Path(sys.executable).parent


@pytest.fixture
def clean_env() -> dict[str, str]:
    """Environment for child interpreters: no PYTHONPATH or user site, so only what is installed is importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def build_tiny_hf_folder(folder: Path, vocab: int = 384, seed: int = 0) -> Path:
    """A Hugging Face Llama-style causal LM saved as a local folder (config.json, model.safetensors) with a
    byte-level BPE tokenizer trained here on CPython's topic help: no hub, nothing downloaded."""
    import pydoc_data.topics
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.train_from_iterator(list(pydoc_data.topics.topics.values()), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_folder(tmp_path_factory) -> Path:
    """build_tiny_hf_folder in a session temporary folder."""
    return build_tiny_hf_folder(tmp_path_factory.mktemp("hf") / "tiny-llama")
