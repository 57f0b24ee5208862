"""The built-in adapter for the PyPI package hyper-connections (HC and mHC), against the real package."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from depthscope.probe import Probe, ProbeError, open_run
from depthscope.probe.adapters import for_model

hc = pytest.importorskip("hyper_connections")

torch.set_num_threads(1)
VOCAB, D, DEPTH, STREAMS = 53, 32, 3, 4


class Branch(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm, self.proj = nn.LayerNorm(d), nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.proj(self.norm(x))) * 3.0


class HCNet(nn.Module):
    """A small stack of attention-like and MLP-like branches connected by the package's (m)HC."""

    def __init__(self, kind: str, own_branches: bool = False):
        super().__init__()
        self.own_branches = own_branches  # the model calls each branch itself: hc(streams) -> (input, add)
        make = (hc.get_init_and_expand_reduce_stream_functions if kind == "hc"
                else hc.mc_get_init_and_expand_reduce_stream_functions)
        init, self.expand, self.reduce = make(STREAMS)
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(
            nn.ModuleList([init(dim=D, branch=None if own_branches else Branch(D), layer_index=2 * i + j)
                           for j in range(2)]) for i in range(DEPTH))
        if own_branches:
            self.branches = nn.ModuleList(Branch(D) for _ in range(2 * DEPTH))
        self.head = nn.Linear(D, VOCAB)
        with torch.no_grad():  # the package initialises the dynamic weights at 0: make them depend on the token
            for name, p in self.named_parameters():
                if "dynamic" in name or name.endswith(("scale", "static_beta")):
                    p.add_(torch.randn_like(p) * 0.5)

    def forward(self, x):
        streams = self.expand(self.embed(x))  # [(batch streams), tokens, d]
        for i, (attn, mlp) in enumerate(self.layers):
            if self.own_branches:
                for j, hc_module in enumerate((attn, mlp)):
                    branch_input, add = hc_module(streams)
                    streams = add(self.branches[2 * i + j](branch_input))
            else:
                streams = mlp(attn(streams))
        return self.head(self.reduce(streams))


def rms(x):
    return x.detach().float().pow(2).mean(-1).sqrt()


@pytest.mark.parametrize("kind,own_branches", [("hc", False), ("mhc", False), ("hc", True)])
def test_hyper_connections_rows_of_m_rebuild_every_branch_input(kind, own_branches, tmp_path):
    torch.manual_seed(0)
    model = HCNet(kind, own_branches)
    adapter = for_model(model)
    assert adapter.name == f"hyper-connections {'HC' if kind == 'hc' else 'mHC'} ({STREAMS} streams)"
    text = repr(adapter)
    if own_branches:  # h_l is the first thing each HC module returns; f_l is not reachable from it
        assert "h=Output('layers.{i}.0', 0)" in text and "f=" not in text
    else:
        assert "Input('layers.{i}.0.branch')" in text and "Input('layers.{i}.1.branch')" in text and "repeat=3" in text
    x = torch.randint(0, VOCAB, (2, 7))
    h, f, handles = {}, {}, []
    branches = list(model.branches) if own_branches else [pair[j].branch for pair in model.layers for j in (0, 1)]
    for l, branch in enumerate(branches, start=1):
        handles.append(branch.register_forward_pre_hook(lambda m, a, l=l: h.__setitem__(l, a[0].detach())))
        handles.append(branch.register_forward_hook(lambda m, a, o, l=l: f.__setitem__(l, o.detach())))
    with Probe(model, dtype=torch.float32, grads=True) as probe:
        model(x).logsumexp(-1).mean().backward()
    for handle in handles:
        handle.remove()
    r, layout = probe.records[0], probe.layout
    L = 2 * DEPTH
    assert layout.sublayer_labels == ["attn1", "mlp1", "attn2", "mlp2", "attn3", "mlp3"]
    assert layout.source_labels[2] == ["emb", "attn1", "mlp1"]
    values = [model.embed(x).detach()] + [f[l] for l in range(1, L + 1)]  # v_0 .. v_L
    for l in range(1, L + 1):
        row = r.alpha[:, :, l - 1, :l]  # [batch, tokens, sources]: row l of M per token
        # independently of how the rows were formed: they are the coefficients of the branch input
        rebuilt = sum(row[..., j, None] * values[j] for j in range(l))
        torch.testing.assert_close(rebuilt, h[l], atol=2e-4, rtol=2e-4)
        torch.testing.assert_close(r.input_rms[:, :, l - 1], rms(h[l]))
        if not own_branches:
            torch.testing.assert_close(r.output_rms[:, :, l - 1], rms(f[l]))
            assert r.grad_norms[l - 1] > 0
    assert float(r.alpha[:, :, -1, :L].std(dim=(0, 1)).max()) > 1e-3  # rows differ from token to token
    # to disk, and the mixing analyses read the rows as M
    with Probe(model, out=tmp_path / "run") as probe:
        model(x)
    run = open_run(tmp_path / "run")
    assert run.complete and run.source_labels[5] == ["emb", "attn1", "mlp1", "attn2", "mlp2", "attn3"]


def test_hyper_connections_rows_need_every_sublayer():
    model = HCNet("hc")
    with pytest.raises(ProbeError, match="needs sublayer 2 recorded"):
        with Probe(model, sublayers=[3]):
            model(torch.randint(0, VOCAB, (1, 5)))


def test_unsupported_hyper_connection_settings_are_named():
    init, expand, reduce = hc.get_init_and_expand_reduce_stream_functions(2, num_fracs=2)
    model = nn.Sequential(init(dim=D, branch=nn.Linear(D, D)))
    with pytest.raises(ProbeError, match=r"hyper-connections: 0 \(HyperConnections\) uses num_fracs > 1"):
        for_model(model)
