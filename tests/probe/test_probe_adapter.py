"""Probing a model written elsewhere: a small AttnRes network defined here, not using depthscope.models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthscope.probe import Adapter, Input, Output, Probe, ProbeError, Sublayer, Weights, open_run

torch.set_num_threads(1)


class DepthAttention(nn.Module):
    """softmax over sources of w . RMSNorm(v_i); returns sum_i alpha_i v_i. Sources come as a list."""

    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(d))

    def weights(self, sources: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(sources, dim=-2)  # [batch, tokens, sources, d]
        return torch.softmax(F.rms_norm(stacked, (stacked.shape[-1],)) @ self.query, dim=-1)

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        alpha = self.weights(sources)
        return (alpha.unsqueeze(-1) * torch.stack(sources, dim=-2)).sum(-2)


class TinyAttnRes(nn.Module):
    def __init__(self, d: int = 8, depth: int = 3):
        super().__init__()
        self.embed = nn.Embedding(50, d)
        self.mix = nn.ModuleList(DepthAttention(d) for _ in range(depth + 1))
        self.f = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU()) for _ in range(depth))
        self.head = nn.Linear(d, 50)
        self.seen_alpha: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sources = [self.embed(x)]
        self.seen_alpha = []
        for mix, f in zip(self.mix, self.f):
            self.seen_alpha.append(mix.weights(sources).detach())
            sources.append(f(mix(sources)))
        self.seen_alpha.append(self.mix[-1].weights(sources).detach())
        return self.head(self.mix[-1](sources))


def mixer_weights(module, args, kwargs, output):
    return module.weights(args[0])


def adapter_for(depth: int) -> Adapter:
    return Adapter(
        pattern=[Sublayer("sub{l}", h=Input("f.{k}"), f=Output("f.{k}"), weights=Weights("mix.{k}", compute=mixer_weights),
                          params=("f.{k}",))],
        repeat=depth,
        final=Sublayer("final", weights=Weights("mix.{k}", compute=mixer_weights)),
    )


def test_adapter_records_the_foreign_models_weights_norms_and_grads(tmp_path):
    torch.manual_seed(0)
    model, depth = TinyAttnRes(), 3
    x = torch.randint(0, 50, (2, 6))
    h_seen = {}
    def keep(module, args, i):
        args[0].retain_grad()
        h_seen[i] = args[0]

    handles = [model.f[i].register_forward_pre_hook(lambda m, a, i=i: keep(m, a, i)) for i in range(depth)]
    with Probe(model, adapter=adapter_for(depth), grads=True, dtype=torch.float32) as probe:
        F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    for h in handles:
        h.remove()
    r = probe.records[0]
    assert probe.layout.sublayers == [1, 2, 3, 4]
    assert probe.layout.sublayer_labels == ["sub1", "sub2", "sub3", "final"]
    assert probe.layout.source_labels[2] == ["emb", "sub1", "sub2"]
    for l, expected in enumerate(model.seen_alpha, start=1):
        torch.testing.assert_close(r.alpha[:, :, l - 1, :l], expected)
        assert torch.isnan(r.alpha[:, :, l - 1, l:]).all()
    for i in range(depth):
        h = h_seen[i]
        torch.testing.assert_close(r.input_rms[:, :, i], h.pow(2).mean(-1).sqrt())
        torch.testing.assert_close(r.grad_rms[:, :, i], h.grad.pow(2).mean(-1).sqrt())
        norm = sum(float(p.grad.pow(2).sum()) for p in model.f[i].parameters()) ** 0.5
        assert r.grad_norms[i].item() == pytest.approx(norm, rel=1e-5)
    assert r.token.tolist() == x.tolist()
    # and to disk
    with Probe(model, adapter=adapter_for(depth), out=tmp_path / "run") as probe:
        model(x)
    run = open_run(tmp_path / "run")
    assert run.complete and run.n_tokens == 12
    assert run.model["adapter"] is True and run.model["kind"] == "TinyAttnRes"
    torch.testing.assert_close(torch.from_numpy(run.alpha[:, 3, :4]).float(),
                               model.seen_alpha[3].reshape(12, 4), atol=1e-3, rtol=1e-3)


def test_adapter_errors_name_the_problem():
    model = TinyAttnRes()
    x = torch.randint(0, 50, (1, 4))
    with pytest.raises(ProbeError, match="no modules named nope"):
        Probe(model, adapter=Adapter([Sublayer("a", weights=Weights("nope", compute=mixer_weights))])).__enter__()
    # returns [b, t, d], not weights over the 1 source of sublayer 1
    bad = Adapter([Sublayer("a", weights=Weights("mix.{k}", compute=lambda m, a, k, o: o))])
    with pytest.raises(ProbeError, match=r"weights at mix.0 have shape \(1, 4, 8\): 8 sources, but the sublayer has 1"):
        with Probe(model, adapter=bad):
            model(x)
    wide = Adapter([Sublayer("a", h=Input("f.{k}.1"))], repeat=2, d_model=8)  # f.0.1 is fine; d_model is 8
    narrow = Adapter([Sublayer("a", h=Input("f.{k}"))], repeat=2, d_model=6)
    with pytest.raises(ProbeError, match=r"h_l of sublayer 1 at Input\('f.0'\) has shape \(1, 4, 8\): its last axis is not d_model = 6"):
        with Probe(model, adapter=narrow):
            model(x)
    with Probe(model, adapter=wide) as probe:
        model(x)
    assert probe.records[0].input_rms.shape == (1, 4, 2)


class ReturningAttention(DepthAttention):
    """Returns what it mixed and its weights, sources first: {"h": [b, t, d], "weights": [sources, b, t]}."""

    def forward(self, sources):
        alpha = self.weights(sources)
        return {"h": (alpha.unsqueeze(-1) * torch.stack(sources, dim=-2)).sum(-2), "weights": alpha.movedim(-1, 0)}


class TinyReturning(TinyAttnRes):
    def __init__(self, d: int = 8, depth: int = 3):
        super().__init__(d, depth)
        self.mix = nn.ModuleList(ReturningAttention(d) for _ in range(depth + 1))

    def forward(self, x):
        sources = [self.embed(x)]
        self.seen_h = []
        for mix, f in zip(self.mix, self.f):
            self.seen_h.append(mix(sources)["h"])
            sources.append(f(self.seen_h[-1]))
        return (self.head(self.mix[-1](sources)["h"]),)


def test_weights_and_h_read_from_what_a_module_returns():
    torch.manual_seed(3)
    model, depth = TinyReturning(), 3
    x = torch.randint(0, 50, (2, 5))
    adapter = Adapter(
        pattern=[Sublayer("sub{l}", h=Output("mix.{k}", "h"), f=Output("f.{k}"),
                          weights=Weights("mix.{k}", key="weights", source_axis=0))],
        repeat=depth, final=Sublayer("final", weights=Weights("mix.{k}", key="weights", source_axis=0)))
    assert "Weights('mix.{k}', key='weights', source_axis=0)" in repr(adapter)
    with Probe(model, adapter=adapter, dtype=torch.float32) as probe:
        logits = model(x)[0]
        probe.commit(targets=x)  # logits found as the tuple's 3-d tensor
    r = probe.records[0]
    sources = [model.embed(x)]
    for l in range(1, depth + 2):
        expected = model.mix[l - 1].weights(sources)  # [b, t, l], recomputed from the sources
        torch.testing.assert_close(r.alpha[:, :, l - 1, :l], expected.detach())
        if l <= depth:
            torch.testing.assert_close(r.input_rms[:, :, l - 1], model.seen_h[l - 1].detach().pow(2).mean(-1).sqrt())
            sources.append(model.f[l - 1](model.seen_h[l - 1]))
    torch.testing.assert_close(r.loss, F.cross_entropy(logits.detach().transpose(1, 2), x, reduction="none"))
