"""`depthscope record --hf DIR` and `--model module:function`: models depthscope did not build, recorded with
their own tokenizer's subword tokens, from a text file or a corpus depthscope knows."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from depthscope.cli import main
from depthscope.probe import open_run

FACTORY = textwrap.dedent('''
    import torch
    from transformers import AutoTokenizer
    from depthscope.models import DepthTransformer, ModelConfig

    FOLDER = {folder!r}

    def tapped():
        """depthscope's own Block AttnRes transformer over a Hugging Face tokenizer's ids."""
        tokenizer = AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)
        torch.manual_seed(0)
        model = DepthTransformer(ModelConfig(mixer="block_attnres", vocab_size=len(tokenizer), n_layers=2,
                                             d_model=32, n_heads=2, max_seq_len=64, n_blocks=2))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "depth.queries" in name:
                    p.normal_()  # non-uniform routing
        return model, tokenizer

    def not_a_model():
        return 42

    def no_depth_structure():
        """A model the probe has nothing to read in (no taps, no built-in adapter)."""
        return torch.nn.Sequential(torch.nn.Embedding(300, 8), torch.nn.Linear(8, 300))
''')


@pytest.fixture
def factory_module(tmp_path, tiny_hf_folder, monkeypatch):
    (tmp_path / "my_factories.py").write_text(FACTORY.format(folder=str(tiny_hf_folder)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_factories"


@pytest.fixture
def text_file(tmp_path):
    paragraphs = [f"Paragraph {i}: the quick brown fox jumps over the lazy dog, again and again.\n" * 3
                  for i in range(60)]
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path


def test_a_factory_model_is_recorded_with_its_subword_tokens(tmp_path, factory_module, text_file, tiny_hf_folder):
    from transformers import AutoTokenizer

    out = tmp_path / "runs" / "tapped"
    code = main(["record", "--model", f"{factory_module}:tapped", "--corpus", str(text_file), "--tokens", "256",
                 "--seq-len", "32", "--batch-size", "4", "--grads", "--out", str(out), "--no-progress"])
    assert code == 0
    run = open_run(out)
    assert run.complete and run.n_tokens == 256
    assert run.manifest["source"] == {"factory": f"{factory_module}:tapped"}
    assert run.manifest["tokenizer"]["kind"] == "transformers" and run.vocab_size == run.manifest["tokenizer"]["vocab_size"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_folder, local_files_only=True)
    ids = run.token[:]
    assert ids.max() >= 256  # subword ids, not bytes
    # the recorded text is the corpus text, token by token, and the labels are the subwords
    recorded = run.text(0, 64)
    assert recorded == tokenizer.decode(ids[:64].tolist())
    assert recorded in text_file.read_text(encoding="utf-8")
    the = tokenizer.encode(" the", add_special_tokens=False)
    assert len(the) == 1 and run.token_label(the[0]) == " the" and (ids == the[0]).any()
    assert np.isfinite(run.loss[:]).all() and np.isfinite(run.grad_rms[:]).any()
    a = run.alpha[:].astype(np.float32)
    assert np.nanstd(a[:, 1, :2]) > 0.01  # routing differs between tokens


def test_hf_record_needs_a_model_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["record", "--hf", str(empty), "--corpus", "pydoc", "--out", str(tmp_path / "r")]) == 1
    assert "no config.json" in capsys.readouterr().err
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    assert main(["record", "--hf", str(empty), "--corpus", "pydoc", "--out", str(tmp_path / "r")]) == 1
    assert "no *.safetensors" in capsys.readouterr().err
    assert main(["record", "--hf", str(tmp_path / "nowhere"), "--corpus", "pydoc", "--out", str(tmp_path / "r")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_bad_factories_and_arguments_are_clear_errors(tmp_path, factory_module, capsys):
    out = str(tmp_path / "r")
    for spec, message in [("no_colon", "expected module:function"), ("no_such_module_xyz:f", "cannot import"),
                          (f"{factory_module}:missing", "has no 'missing'"),
                          (f"{factory_module}:not_a_model", "returned int, expected a torch nn.Module"),
                          (f"{factory_module}:no_depth_structure", "no_depth_structure: nothing to record")]:
        assert main(["record", "--model", spec, "--corpus", "pydoc", "--out", out]) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["record", "--checkpoint", "x", "--tokenizer", "bytes", "--corpus", "pydoc", "--out", out])
    assert exit_.value.code == 2 and "--tokenizer applies to --model only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["record", "--checkpoint", "x", "--hf", "y", "--corpus", "pydoc", "--out", out])
    assert exit_.value.code == 2
    assert not (tmp_path / "r").exists()


def test_an_hf_folder_is_recorded_as_the_model_scores_it(tmp_path, tiny_hf_folder, text_file):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "llama"
    assert main(["record", "--hf", str(tiny_hf_folder), "--corpus", str(text_file), "--tokens", "128", "--seq-len",
                 "32", "--batch-size", "2", "--grads", "--out", str(out), "--no-progress"]) == 0
    run = open_run(out)
    assert run.complete and run.n_tokens == 128 and run.manifest["source"]["hf"] == str(tiny_hf_folder.resolve())
    assert run.sublayer_labels == ["attn1", "mlp1", "attn2", "mlp2"]
    for name in ("input_rms", "output_rms", "grad_rms"):
        assert np.isfinite(getattr(run, name)[:]).all()
    # per-token losses are the model's own next-token losses on the recorded window
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_folder, local_files_only=True).eval()
    window = torch.as_tensor(run.token[:32]).long()[None]
    with torch.no_grad():
        own = model(input_ids=window, labels=window).loss
    assert np.isclose(run.loss[:31].mean(), float(own), rtol=1e-4)
    assert run.text(0, 32) in text_file.read_text(encoding="utf-8")
