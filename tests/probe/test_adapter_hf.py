"""The built-in adapter for Hugging Face transformers decoders (Llama / Qwen naming, GPT-2), on tiny models built
from configs (never from the hub): the residual stream as a baseline."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from depthscope.probe import Probe, open_run
from depthscope.probe.adapters import for_model

transformers = pytest.importorskip("transformers")

torch.set_num_threads(1)
VOCAB, D, LAYERS = 67, 32, 3


def llama():
    cfg = transformers.LlamaConfig(hidden_size=D, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg)


def qwen2():
    cfg = transformers.Qwen2Config(hidden_size=D, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    return transformers.Qwen2ForCausalLM(cfg)


def gpt2():
    cfg = transformers.GPT2Config(n_embd=D, n_layer=LAYERS, n_head=4, vocab_size=VOCAB, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


# (factory, decoder layers, (pre-attention norm, attention, pre-MLP norm, MLP))
MODELS = {
    "llama": (llama, "model.layers", ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")),
    "qwen2": (qwen2, "model.layers", ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")),
    "gpt2": (gpt2, "transformer.h", ("ln_1", "attn", "ln_2", "mlp")),
}


def rms(x):
    return x.detach().float().pow(2).mean(-1).sqrt()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hf_decoder_records_the_residual_stream(name):
    factory, layers_name, parts = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    adapter = for_model(model)
    assert adapter is not None and f"Input('{layers_name}.{{i}}.{parts[0]}')" in repr(adapter)
    layers = model.get_submodule(layers_name)
    seen_h, seen_f, handles = {}, {}, []

    def keep_h(key):
        def hook(module, args):
            args[0].retain_grad()
            seen_h[key] = args[0]
        return hook

    def keep_f(key):
        def hook(module, args, output):
            seen_f[key] = output[0] if isinstance(output, tuple) else output
        return hook

    for i, layer in enumerate(layers):
        for kind, norm, block in (("attn", parts[0], parts[1]), ("mlp", parts[2], parts[3])):
            handles.append(layer.get_submodule(norm).register_forward_pre_hook(keep_h((i, kind))))
            handles.append(layer.get_submodule(block).register_forward_hook(keep_f((i, kind))))
    x = torch.randint(0, VOCAB, (2, 10))
    with Probe(model, grads=True) as probe:
        out = model(input_ids=x, labels=x)
        out.loss.backward()
        probe.commit(loss=out.loss)
    for h in handles:
        h.remove()
    r, layout = probe.records[0], probe.layout
    assert layout.sublayer_labels == ["attn1", "mlp1", "attn2", "mlp2", "attn3", "mlp3"]
    assert "alpha" not in layout.quantities
    assert r.token.tolist() == x.tolist()  # found in input_ids=
    stream = seen_h[(0, "attn")]
    for i in range(LAYERS):
        for j, kind in enumerate(("attn", "mlp")):
            slot = 2 * i + j
            h, f = seen_h[(i, kind)], seen_f[(i, kind)]
            torch.testing.assert_close(h, stream)  # the residual stream: x + every earlier output
            stream = stream + f
            torch.testing.assert_close(r.input_rms[:, :, slot], rms(h))
            torch.testing.assert_close(r.output_rms[:, :, slot], rms(f))
            torch.testing.assert_close(r.grad_rms[:, :, slot], rms(h.grad))
            params = list(layers[i].get_submodule(parts[2 * j]).parameters()) + \
                list(layers[i].get_submodule(parts[2 * j + 1]).parameters())
            norm = sum(float(p.grad.pow(2).sum()) for p in params) ** 0.5
            assert r.grad_norms[slot].item() == pytest.approx(norm, rel=1e-4)
    # the model's loss scores token t against label t + 1: per-token losses average to it; the last has none
    logits = out.logits.detach()
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")
    torch.testing.assert_close(r.loss[:, :-1], expected)
    assert torch.isnan(r.loss[:, -1]).all()
    assert r.loss[:, :-1].mean().item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_hf_targets_and_plain_calls(tmp_path):
    torch.manual_seed(1)
    model = llama()
    x = torch.randint(0, VOCAB, (1, 8))
    with Probe(model) as probe:
        out = model(x)  # positional input ids, a ModelOutput back
        probe.commit(targets=x)
    expected = torch.nn.functional.cross_entropy(out.logits.detach().transpose(1, 2), x, reduction="none")
    torch.testing.assert_close(probe.records[0].loss, expected)
    # a run without depth weights (the baseline), on disk and summarised
    with Probe(model, out=tmp_path / "run", summary=True) as probe:
        model(input_ids=x)
    run = open_run(tmp_path / "run")
    assert run.complete and run.n_tokens == 8 and run.model["adapter_name"] == "transformers LlamaForCausalLM"
    assert run.source_labels == [[]] * 6 and run.input_rms.shape == (8, 6)
    norms = probe.summary.to_frames()["norms"]
    assert set(norms["quantity"]) == {"input_rms", "output_rms"} and (norms["count"] == 8).all()


@pytest.mark.skipif(importlib.util.find_spec("transformers.models.kimi_k3") is None,
                    reason="the installed transformers has no Kimi K3 (its AttnRes is on the library's main branch)")
def test_kimi_k3_attnres_weights_are_recorded():
    # Present only in a newer transformers: the built-in adapter must then record Kimi K3's depth weights.
    from transformers.models import kimi_k3

    config = kimi_k3.KimiK3Config(hidden_size=D, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=VOCAB)
    model = kimi_k3.KimiK3ForCausalLM(config)
    with Probe(model) as probe:
        model(torch.randint(0, VOCAB, (1, 8)))
    assert "alpha" in probe.layout.quantities


def test_keyword_inputs_are_reachable():
    from depthscope.probe import Adapter, Input, ProbeError, Sublayer

    torch.manual_seed(2)
    model = llama()
    normed = {}
    handles = [layer.input_layernorm.register_forward_hook(lambda m, a, o, i=i: normed.__setitem__(i, o.detach()))
               for i, layer in enumerate(model.model.layers)]
    x = torch.randint(0, VOCAB, (2, 6))
    # Llama's decoder layer calls self_attn(hidden_states=...): a keyword input
    adapter = Adapter([Sublayer("attn{n}", h=Input("model.layers.{i}.self_attn", "hidden_states"))], repeat=LAYERS)
    with Probe(model, adapter=adapter) as probe:
        model(x)
    for h in handles:
        h.remove()
    for i in range(LAYERS):
        torch.testing.assert_close(probe.records[0].input_rms[:, :, i], rms(normed[i]))
    wrong = Adapter([Sublayer("attn{n}", h=Input("model.layers.{i}.self_attn", "x"))], repeat=LAYERS)
    with pytest.raises(ProbeError, match=r"model.layers.0.self_attn got no keyword input 'x' \(it got \[.*'hidden_states'"):
        with Probe(model, adapter=wrong):
            model(x)
