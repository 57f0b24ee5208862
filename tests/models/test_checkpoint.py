"""Checkpoints round-trip every mixer exactly, never unpickle, and reject each kind of bad input clearly."""
from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    find_checkpoints,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from depthscope.models.data import ByteTokenizer

VARIANTS = [
    dict(mixer="residual"),
    dict(mixer="full_attnres"),
    dict(mixer="block_attnres", n_blocks=2, two_phase=False),
    dict(mixer="block_attnres", n_blocks=2, two_phase=True),
    dict(mixer="denseformer"),
    dict(mixer="hyper"),
    dict(mixer="hyper", mhc=True, hyper_streams=3),
]


def tiny(**overrides) -> ModelConfig:
    base = dict(d_model=16, n_layers=2, n_heads=2, max_seq_len=16)
    base.update(overrides)
    return ModelConfig(**base)


def perturbed_model(seed: int = 0, **overrides) -> DepthTransformer:
    """A model whose every parameter is moved off its init, so zero-initialised ones are checked too."""
    torch.manual_seed(seed)
    model = DepthTransformer(tiny(**overrides))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model = perturbed_model()
    directory = save_checkpoint(model, tmp_path / "ckpt", training={"steps": 3, "seed": 0})
    return model, directory


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_round_trip_gives_identical_logits(tmp_path, overrides):
    model = perturbed_model(**overrides)
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
    directory = save_checkpoint(model, tmp_path / "ckpt", training={"steps": 5, "train_losses": [3.0, float("nan")]})
    loaded, info = load_checkpoint(directory)
    assert info.config == model.cfg
    assert info.tokenizer == ByteTokenizer()
    assert info.training["steps"] == 5
    assert info.training["train_losses"] == [3.0, None]  # NaN is not JSON: stored as null
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_files_and_metadata(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == [META_FILE, WEIGHTS_FILE]  # no temp files left
    meta = json.loads((directory / META_FILE).read_text())
    assert meta["format_version"] == 1
    assert meta["model_config"] == model.cfg.to_dict()
    assert meta["tokenizer"] == ByteTokenizer().to_dict()
    assert meta["depthscope_version"]
    info = read_checkpoint_info(directory / META_FILE)  # a file inside the directory is accepted too
    assert info.path == directory


def test_load_never_unpickles(saved, monkeypatch):
    _, directory = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("load_checkpoint must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_checkpoint(directory)


class _Boom:
    ran = False

    def __reduce__(self):
        return (_Boom._explode, ())

    @staticmethod
    def _explode():
        _Boom.ran = True
        return {}


def test_pickle_payload_is_rejected(saved):
    _, directory = saved
    weights = directory / WEIGHTS_FILE
    payload = pickle.dumps({"embed.weight": _Boom()})
    weights.write_bytes(payload)
    # Even with the recorded size and hash updated to match, the pickle is not executed.
    meta = json.loads((directory / META_FILE).read_text())
    meta["weights"] = {"file": WEIGHTS_FILE}
    (directory / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_checkpoint(directory)
    assert not _Boom.ran


def _rewrite_meta(directory, edit):
    meta = json.loads((directory / META_FILE).read_text())
    edit(meta)
    (directory / META_FILE).write_text(json.dumps(meta))


def _rewrite_weights(directory, tensors):
    """Replace model.safetensors and drop the recorded hash, so the tensor checks themselves are exercised."""
    from safetensors.torch import save_file

    save_file(tensors, str(directory / WEIGHTS_FILE))
    _rewrite_meta(directory, lambda m: m.pop("weights", None))


def test_missing_directory_and_files(tmp_path, saved):
    _, directory = saved
    with pytest.raises(CheckpointError, match="no such directory"):
        load_checkpoint(tmp_path / "nowhere")
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: missing"):
        load_checkpoint(directory)
    (directory / META_FILE).unlink()
    with pytest.raises(CheckpointError, match=rf"{META_FILE}: missing"):
        load_checkpoint(directory)


def test_corrupt_and_truncated_json(saved):
    _, directory = saved
    meta_path = directory / META_FILE
    text = meta_path.read_text()
    meta_path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=rf"{META_FILE}: corrupt or truncated JSON"):
        load_checkpoint(directory)
    meta_path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CheckpointError, match=META_FILE):
        load_checkpoint(directory)


def test_wrong_format_version_and_bad_config(saved):
    _, directory = saved
    _rewrite_meta(directory, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(directory)
    _rewrite_meta(directory, lambda m: m.update(format_version=1, model_config={**m["model_config"], "mixer": "x"}))
    with pytest.raises(CheckpointError, match="bad model_config"):
        load_checkpoint(directory)


def test_truncated_and_corrupt_safetensors(saved):
    _, directory = saved
    weights = directory / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: .*truncated"):
        load_checkpoint(directory)
    # Without the recorded size/hash, safetensors' own checks must still reject it.
    _rewrite_meta(directory, lambda m: m.pop("weights"))
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        load_checkpoint(directory)
    header_len = struct.unpack("<Q", data[:8])[0]
    weights.write_bytes(data[:8] + b"[" + data[9 : 8 + header_len] + data[8 + header_len :])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: not a safetensors file"):
        load_checkpoint(directory)


def test_same_size_tampering_is_caught_by_the_hash(saved):
    _, directory = saved
    weights = directory / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(directory)


def test_config_mismatch_with_tensors(saved):
    model, directory = saved
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    missing = dict(tensors)
    missing.pop("head.weight")
    _rewrite_weights(directory, missing)
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\) \['head.weight'\]"):
        load_checkpoint(directory)
    _rewrite_weights(directory, {**tensors, "extra.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected 1 tensor\(s\) \['extra.weight'\]"):
        load_checkpoint(directory)
    _rewrite_weights(directory, tensors)
    _rewrite_meta(directory, lambda m: m["model_config"].update(d_model=32, n_heads=4))
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: tensor .* has shape"):
        load_checkpoint(directory)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(saved, bad):
    model, directory = saved
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["head.weight"][0, 0] = bad
    _rewrite_weights(directory, tensors)
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: tensor head.weight holds NaN or infinite"):
        load_checkpoint(directory)


def test_resave_over_existing_checkpoint_and_find(tmp_path):
    first, second = perturbed_model(seed=0), perturbed_model(seed=1)
    root = tmp_path / "run"
    save_checkpoint(first, root / "step_000000")
    save_checkpoint(first, root)
    save_checkpoint(second, root)  # overwrite in place
    loaded, _ = load_checkpoint(root)
    assert torch.equal(loaded.head.weight, second.head.weight)
    assert find_checkpoints(root) == [root / "step_000000", root]
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_crash_while_writing_leaves_no_complete_looking_checkpoint(tmp_path, monkeypatch):
    import depthscope.models.checkpoint as ckpt

    model = perturbed_model()
    directory = save_checkpoint(model, tmp_path / "ckpt")
    real = ckpt._atomic_write

    def crash_on_meta(path, write):
        if path.name == META_FILE:
            raise KeyboardInterrupt("simulated crash")
        real(path, write)

    monkeypatch.setattr(ckpt, "_atomic_write", crash_on_meta)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(perturbed_model(seed=5), directory)
    with pytest.raises(CheckpointError, match=rf"{META_FILE}: missing"):
        load_checkpoint(directory)
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_float16_storage_round_trip_and_integer_mismatch(tmp_path):
    import torch

    from depthscope.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from depthscope.models.config import ModelConfig
    from depthscope.models.transformer import DepthTransformer

    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer="block_attnres", d_model=32, n_layers=2, n_heads=2, n_blocks=2,
                                         max_seq_len=16)).eval()
    small = save_checkpoint(model, tmp_path / "half", storage_dtype=torch.float16)
    full = save_checkpoint(model, tmp_path / "full")
    assert (small / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded, _ = load_checkpoint(small)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    tokens = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens), atol=2e-2, rtol=0)
        assert not torch.equal(loaded(tokens), model(tokens)), "float16 storage must round the weights"
    # An integer tensor where a float is expected is still refused.
    from safetensors.torch import load_file, save_file

    tensors = load_file(full / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name].to(torch.int32)
    bad = save_checkpoint(model, tmp_path / "bad")
    save_file(tensors, bad / "model.safetensors")
    # Keep the recorded size and hash true, so that the dtype check itself is what refuses it.
    import hashlib
    import json

    payload = (bad / "model.safetensors").read_bytes()
    meta = json.loads((bad / "checkpoint.json").read_text())
    meta["weights"].update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    (bad / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(bad)
