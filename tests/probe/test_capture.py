"""The probe's hooks: what they record is what the model computed, once, and nothing stays attached."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from depthscope.models import DepthTransformer
from depthscope.models.layers import unit_rms
from depthscope.probe import Probe, ProbeError
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

torch.set_num_threads(1)


def tiny(mixer: str = "full_attnres", seed: int = 0, **kw) -> DepthTransformer:
    return tiny_model(mixer, seed, **kw)


def tokens(batch=2, seq=8, seed=1) -> torch.Tensor:
    return torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(seed))


def collect(model: DepthTransformer, x: torch.Tensor, retain=False):
    """Sources (embedding + sublayer outputs), sublayer inputs, by our own hooks."""
    seen = {"emb": None, "out": {}, "in": {}}
    handles = [model.embed.register_forward_hook(lambda m, a, o: seen.__setitem__("emb", o))]
    for sub in model.sublayers:
        def out_hook(m, a, o, l=sub.index):
            seen["out"][l] = o

        def in_hook(m, a, o, l=sub.index):
            if retain and o.requires_grad:
                o.retain_grad()
            seen["in"][l] = o

        handles += [sub.tap_output.register_forward_hook(out_hook), sub.tap_input.register_forward_hook(in_hook)]
    return seen, handles


def all_hooks(model: torch.nn.Module) -> int:
    count = 0
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks) + len(module._backward_hooks)
    for p in model.parameters():
        count += len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    return count


def test_full_attnres_alpha_is_the_softmax_recomputed_by_hand():
    model, x = tiny("full_attnres"), tokens()
    seen, handles = collect(model, x)
    with Probe(model, dtype=torch.float32) as probe:
        model(x)
    for h in handles:
        h.remove()
    record = probe.records[0]
    L = model.cfg.n_sublayers
    assert probe.layout.sublayers == list(range(1, L + 2))
    assert probe.layout.sublayer_labels[-1] == "final"
    queries = (model.mixer.depth.queries * model.mixer.depth.key_gains).detach()
    values = [seen["emb"]] + [seen["out"][i] for i in range(1, L + 1)]
    for l in range(1, L + 2):
        keys = torch.stack([unit_rms(v) for v in values[:l]], dim=-2)  # [batch, tokens, sources, d]
        expected = torch.softmax(keys @ queries[l - 1], dim=-1)  # [batch, tokens, sources]
        got = record.alpha[:, :, l - 1]
        torch.testing.assert_close(got[..., :l], expected.detach(), rtol=1e-5, atol=1e-6)
        assert torch.isnan(got[..., l:]).all()  # invalid sources
        torch.testing.assert_close(got[..., :l].sum(-1), torch.ones(got.shape[:2]))
    assert probe.layout.source_labels[2] == ["emb", "attn1", "mlp1"]
    assert not torch.allclose(record.alpha[:, :, 2, 0], torch.full_like(record.alpha[:, :, 2, 0], 1 / 3))


@pytest.mark.parametrize("mixer", ["residual", "block_attnres", "denseformer", "hyper"])
def test_every_mixer_records_rms_by_hand_and_valid_weights(mixer):
    model, x = tiny(mixer), tokens()
    seen, handles = collect(model, x)
    with Probe(model) as probe:
        model(x)
    for h in handles:
        h.remove()
    r = probe.records[0]
    assert r.alpha.dtype == torch.float16
    for l in range(1, model.cfg.n_sublayers + 1):
        slot = probe.layout.slot(l)
        h, f = seen["in"][l], seen["out"][l]
        torch.testing.assert_close(r.input_rms[:, :, slot], h.pow(2).mean(-1).sqrt(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(r.output_rms[:, :, slot], f.pow(2).mean(-1).sqrt(), rtol=1e-5, atol=1e-7)
    valid = torch.from_numpy(probe.layout.valid)
    alpha = r.alpha.float()
    rows = valid.any(-1)
    assert torch.isfinite(alpha[:, :, valid]).all()
    assert torch.isnan(alpha[:, :, ~valid]).all()
    if mixer == "block_attnres":
        torch.testing.assert_close(alpha[:, :, rows].nansum(-1), torch.ones_like(alpha[:, :, rows, 0]), atol=2e-3, rtol=0)
    if mixer == "residual":
        assert (alpha[:, :, valid] == 1).all()
        assert "residual_rms" in probe.layout.quantities and torch.isfinite(r.residual_rms[:, :, :-1]).all()
    if mixer == "denseformer":  # weights only where a block average feeds a sublayer
        assert [len(s) for s in probe.layout.source_labels] == [0, 0, 2, 0, 3]


def test_block_attnres_two_phase_records_the_same_weights():
    x = tokens()
    plain = tiny("block_attnres", n_layers=4, two_phase=False)
    fast = tiny("block_attnres", n_layers=4, two_phase=True)
    fast.load_state_dict(plain.state_dict())
    with Probe(plain, dtype=torch.float32) as a, Probe(fast, dtype=torch.float32) as b:
        plain(x), fast(x)
    torch.testing.assert_close(a.records[0].alpha, b.records[0].alpha, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_narrowing_sublayers_positions_dtype_and_every():
    model, x = tiny("full_attnres"), tokens(seq=10)
    with Probe(model, sublayers=[2, 5], positions=(3, 7), capture=("alpha", "output"), every=2) as probe:
        for _ in range(5):
            model(x)
    assert len(probe.records) == 3  # batches 0, 2, 4
    with Probe(model, dtype=torch.float64) as full:
        model(x)
    r, f = probe.records[0], full.records[0]
    assert probe.layout.sublayers == [2, 5] and probe.layout.quantities == ["alpha", "output_rms"]
    assert r.alpha.shape == (2, 4, 2, 5) and r.output_rms.shape == (2, 4, 2) and r.input_rms is None
    torch.testing.assert_close(r.alpha.double()[:, :, 0, :2], f.alpha[:, 3:7, 1, :2], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(r.output_rms[:, :, 0], f.output_rms[:, 3:7, 1])
    assert r.position.tolist() == [[3, 4, 5, 6]] * 2
    assert r.token.tolist() == x[:, 3:7].tolist()
    with pytest.raises(ProbeError, match="no taps at sublayers"):
        Probe(model, sublayers=[99]).__enter__()


def test_loss_from_targets_and_per_token_metadata():
    model, x = tiny(), tokens(seq=9)
    with Probe(model) as probe:
        logits = model(x[:, :-1])
        record = probe.commit(targets=x[:, 1:], document=torch.tensor([7, 8]).repeat_interleave(8).view(2, 8),
                              step=42)
    expected = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(2, 8)
    torch.testing.assert_close(record.loss, expected.detach())
    assert record.step == 42 and record.document[1].tolist() == [8] * 8
    assert len(probe.records) == 1  # committed once; exit adds nothing


def test_gradients_match_autograd_and_parameter_norms():
    model, x = tiny("block_attnres"), tokens()
    seen, handles = collect(model, x, retain=True)
    model.zero_grad()
    with Probe(model, grads=True) as probe:
        loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
    for h in handles:
        h.remove()
    r = probe.records[0]
    for l in range(1, model.cfg.n_sublayers + 1):
        slot = probe.layout.slot(l)
        g = seen["in"][l].grad
        torch.testing.assert_close(r.grad_rms[:, :, slot], g.pow(2).mean(-1).sqrt(), rtol=1e-5, atol=1e-9)
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.sublayers[l - 1].parameters()))
        assert r.grad_norms[slot].item() == pytest.approx(norm, rel=1e-5)
    assert math.isnan(r.grad_norms[-1].item())  # the final mixer owns no sublayer parameters
    assert probe.layout.n_params[0] == sum(p.numel() for p in model.sublayers[0].parameters())


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_counts_nothing_twice(reentrant):
    x = tokens()

    def run(use_checkpoint: bool):
        model = tiny("full_attnres")
        if use_checkpoint:
            for sub in model.sublayers:
                original = sub.forward
                sub.forward = lambda h, c, s, f=original: checkpoint(f, h, c, s, use_reentrant=reentrant)
        calls = {"n": 0}
        model.sublayers[0].tap_input.register_forward_hook(lambda m, a, o: calls.__setitem__("n", calls["n"] + 1))
        with Probe(model, grads=True) as probe:
            for _ in range(2):
                model.zero_grad()
                F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
                probe.commit()
        return probe.records, calls["n"]

    plain, plain_calls = run(False)
    ckpt, ckpt_calls = run(True)
    assert ckpt_calls == 2 * plain_calls  # the forwards really did run again during backward
    assert len(ckpt) == len(plain) == 2
    for a, b in zip(plain, ckpt):
        for name in ("alpha", "input_rms", "output_rms", "grad_rms", "grad_norms"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), equal_nan=True, rtol=1e-5, atol=1e-8)


def test_no_hook_left_behind_on_exit_and_on_exception():
    model, x = tiny("block_attnres"), tokens()
    before = all_hooks(model)
    with Probe(model, grads=True):
        assert all_hooks(model) > before
        F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    assert all_hooks(model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with Probe(model, grads=True, summary=True):
            model(x)
            raise RuntimeError("boom")
    assert all_hooks(model) == before
    # a forward after exit records nothing and runs the plain model
    torch.testing.assert_close(model(x), model(x))


def test_tensor_hooks_do_not_fire_after_exit():
    model, x = tiny(), tokens()
    with Probe(model, grads=True) as probe:
        loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
    record = probe.records[0]
    loss.backward()  # after exit: the removed gradient hooks must not write into anything
    assert torch.isnan(record.grad_rms).all() and record.grad_norms is None


def test_torch_compile_raises_one_clear_error():
    model, x = tiny(), tokens()
    compiled = torch.compile(model, backend="eager")
    with pytest.raises(ProbeError, match="torch.compile"):
        Probe(compiled)
    with Probe(model) as probe:  # compiled while probed: the first forward raises the same error
        with pytest.raises(ProbeError, match="torch.compile"):
            compiled(x)
    assert all_hooks(model) == 0
    torch._dynamo.reset()


def test_misuse_is_reported():
    model = tiny()
    with pytest.raises(ProbeError, match="no depthscope taps"):
        Probe(torch.nn.Linear(3, 3)).__enter__()
    with pytest.raises(ProbeError, match="cannot capture"):
        Probe(model, capture=("alpha", "bogus")).__enter__()
    with pytest.raises(ProbeError, match="every"):
        Probe(model, every=0)
    assert all_hooks(model) == 0
