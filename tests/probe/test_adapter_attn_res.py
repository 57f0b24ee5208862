"""The built-in adapter for the PyPI package attn-res, against the real package (Full, Block, plain residual)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from depthscope.probe import Adapter, Input, Output, Probe, ProbeError, Sublayer, Weights, open_run
from depthscope.probe.adapters import for_model
from depthscope.probe.adapters.attn_res import attnres_weights

attn_res = pytest.importorskip("attn_res")  # pinned in the test extra: present wherever the tests are meant to run
AttnResMode, AttnResTransformer, TransformerConfig = attn_res.AttnResMode, attn_res.AttnResTransformer, attn_res.TransformerConfig

torch.set_num_threads(1)
VOCAB, D, LAYERS = 61, 32, 8


def model_for(mode: str, seed: int = 0) -> AttnResTransformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(d_model=D, n_layers=LAYERS, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, max_seq_len=64,
                            attn_res_mode=AttnResMode(mode), n_blocks=4)
    model = AttnResTransformer(cfg)
    with torch.no_grad():  # the package zero-inits the pseudo-queries (uniform routing): give them real preferences
        for name, p in model.named_parameters():
            if name.endswith("pseudo_query"):
                p.normal_(0, 2.0)
    return model


class Seen:
    """Our own hooks on the package's modules: what each sublayer received and returned, held with gradients."""

    def __init__(self, model):
        self.sources, self.h, self.f, self.norm_in = {}, {}, {}, {}
        self.handles = []
        for k, layer in enumerate(model.layers):
            self.handles.append(layer.register_forward_hook(lambda m, a, o, k=k: self.f.__setitem__(k, o)))
            self.handles.append(layer.norm.register_forward_hook(lambda m, a, o, k=k: self._keep(k, a[0])))
            if hasattr(layer, "attn_res"):
                self.handles.append(layer.attn_res.register_forward_hook(self._mixer(k)))

    def _mixer(self, k):
        def hook(module, args, output):  # returns None: the output passes unchanged
            self.sources[k], self.h[k] = args[0], output
        return hook

    def _keep(self, k, x):
        x.retain_grad()
        self.norm_in[k] = x

    def remove(self):
        for h in self.handles:
            h.remove()


def rms(x):
    return x.detach().float().pow(2).mean(-1).sqrt()


@pytest.mark.parametrize("mode", ["full", "block", "none"])
def test_attn_res_records_weights_h_f_and_grads(mode, tmp_path):
    model = model_for(mode)
    adapter = for_model(model)
    assert adapter is not None and adapter.name == f"attn-res {mode}"
    x, y = torch.randint(0, VOCAB, (2, 12)), torch.randint(0, VOCAB, (2, 12))
    seen = Seen(model)
    with Probe(model, grads=True, dtype=torch.float32) as probe:  # no adapter argument: found automatically
        logits, loss = model(x, y)
        loss.backward()
        probe.commit(loss=loss)
    seen.remove()
    r, layout = probe.records[0], probe.layout
    assert layout.sublayers == list(range(1, LAYERS + 1))
    assert layout.sublayer_labels[:3] == ["attn1", "mlp1", "attn2"]
    for k in range(LAYERS):
        h = seen.norm_in[k]  # what the sublayer normalises and transforms: h_l in every mode
        if mode != "none":
            torch.testing.assert_close(seen.h[k], h)
        torch.testing.assert_close(r.input_rms[:, :, k], rms(h))
        torch.testing.assert_close(r.output_rms[:, :, k], rms(seen.f[k]))
        torch.testing.assert_close(r.grad_rms[:, :, k], rms(h.grad))
        params = list(model.layers[k].norm.parameters()) + list(model.layers[k].fn.parameters())
        norm = sum(float(p.grad.pow(2).sum()) for p in params) ** 0.5
        assert r.grad_norms[k].item() == pytest.approx(norm, rel=1e-4)
    # per-token losses from the model's own (logits, loss): they average to its loss
    torch.testing.assert_close(r.loss, F.cross_entropy(logits.detach().transpose(1, 2), y, reduction="none"))
    assert r.loss.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    if mode == "none":
        assert "alpha" not in layout.quantities
        # the plain residual: h_l = embedding + every earlier output
        stream = model.token_emb(x)
        for k in range(LAYERS):
            torch.testing.assert_close(seen.norm_in[k], stream)
            stream = stream + seen.f[k]
        return
    for k in range(LAYERS):
        sources = seen.sources[k].detach()  # [N_src, batch, tokens, d]
        n = sources.shape[0]
        assert len(layout.source_labels[k]) == n
        alpha = r.alpha[:, :, k, :n]  # [batch, tokens, sources]
        assert torch.isnan(r.alpha[:, :, k, n:]).all()
        # independently: q . (v / rms(v)), softmax over sources
        keys = sources * torch.rsqrt(sources.pow(2).mean(-1, keepdim=True) + model.cfg.eps)
        q = model.layers[k].attn_res.pseudo_query.detach()
        expected = torch.softmax((keys * q).sum(-1), dim=0).permute(1, 2, 0)
        torch.testing.assert_close(alpha, expected)
        # and they are the weights the package used: sum_i alpha_i v_i is its h_l
        torch.testing.assert_close(torch.einsum("btn,nbtd->btd", alpha, sources), seen.h[k].detach())
    assert float(r.alpha[:, :, -1].nan_to_num(0).std()) > 0.05  # routing is far from uniform here
    if mode == "full":
        assert layout.source_labels[3] == ["emb", "attn1", "mlp1", "attn2"]
    else:  # 8 sublayers in 4 blocks of 2, as the package closes them
        assert layout.source_labels[1] == ["emb", "partial"]
        assert layout.source_labels[3] == ["emb", "block1", "partial"]
        assert layout.source_labels[7] == ["emb", "block1", "block2", "block3", "partial"]
    # to disk, and read back
    with Probe(model, out=tmp_path / "run") as probe:
        model(x)
    run = open_run(tmp_path / "run")
    assert run.complete and run.n_tokens == 24 and run.model["adapter_name"] == f"attn-res {mode}"
    torch.testing.assert_close(torch.from_numpy(run.alpha[:12, 3, :3]).float(), r.alpha[0, :, 3, :3],
                               atol=2e-3, rtol=2e-3)


def test_attn_res_inside_a_wrapper_and_the_printout():
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model_for("block")

        def forward(self, x):
            return {"logits": self.net(x)}

    model = Wrapper()
    adapter = for_model(model)
    text = repr(adapter)
    assert "Output('net.layers.{k}.attn_res')" in text and "BlockSources(n_layers=8, block_size=2)" in text
    assert "compute=depthscope.probe.adapters.attn_res.attnres_weights" in text
    x = torch.randint(0, VOCAB, (1, 9))
    with Probe(model) as probe:
        out = model(x)
        probe.commit(targets=x)  # logits found in the dict the wrapper returns
    torch.testing.assert_close(probe.records[0].loss,
                               F.cross_entropy(out["logits"].transpose(1, 2), x, reduction="none"))


def test_the_issue_recipes_give_one_clear_error():
    model = model_for("full")
    x = torch.randint(0, VOCAB, (2, 6))

    def probe_with(**sublayer):
        with Probe(model, adapter=Adapter([Sublayer("{label}", **sublayer)], repeat=LAYERS)):
            model(x)

    # naming the sublayer module: its input is the stacked sources, not h_l
    with pytest.raises(ProbeError, match=r"h_l of sublayer 1 at Input\('layers.0'\) is a tensor of shape \(1, 2, 6, 32\)"):
        probe_with(h=Input("layers.{k}"))
    # the weights with the sources left on axis 0 (source_axis not given): [N, b, t] = [1, 2, 6] read as 6 sources
    with pytest.raises(ProbeError, match=r"weights at layers.0.attn_res have shape \(1, 2, 6\): 6 sources, but the "
                                         r"sublayer has 1 source labels"):
        probe_with(weights=Weights("layers.{k}.attn_res", compute=attnres_weights))
    # a source count that disagrees with the labels
    with pytest.raises(ProbeError, match=r"weights at layers.1.attn_res have shape \(2, 6, 2\): 2 sources, but the "
                                         r"sublayer has 1 source labels \['emb'\]"):
        with Probe(model, adapter=Adapter([Sublayer("{label}", weights=Weights(
                "layers.{k}.attn_res", compute=attnres_weights, source_axis=0))], repeat=LAYERS,
                sources=lambda l: ["emb"])):
            model(x)
    # an f_l that is not d_model wide (the SwiGLU's gate, d_ff)
    with pytest.raises(ProbeError, match=r"f_l of sublayer 2 at Output\('layers.1.fn.w_gate'\) has shape \(2, 6, 88\): "
                                         r"its last axis is not d_model = 32"):
        with Probe(model, adapter=Adapter([Sublayer("attn{n}", f=Output("layers.{k}.fn")),
                                           Sublayer("mlp{n}", f=Output("layers.{k}.fn.w_gate"))],
                                          repeat=LAYERS // 2, d_model=D)):
            model(x)
    # weights that are not a softmax over sources: a warning naming the module
    logits_only = Weights("layers.{k}.attn_res", source_axis=0,
                          compute=lambda m, a, k, o: torch.einsum("d,nbtd->nbt", m.pseudo_query, a[0]))
    with pytest.warns(UserWarning, match=r"softmax weights at layers.1.attn_res \(shape \(2, 6, 2\)\)"):
        with Probe(model, adapter=Adapter([Sublayer("{label}", weights=logits_only)], repeat=LAYERS)):
            model(x)
