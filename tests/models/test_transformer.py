"""The depth mixers follow DESIGN.md's equations: checked against hand computations and against each other."""
from __future__ import annotations

import pytest
import torch

from depthscope.models import DepthTransformer, ModelConfig, iter_taps
from depthscope.models.layers import unit_rms
from depthscope.models.mixers import sinkhorn

ALL_VARIANTS = [
    dict(mixer="residual"),
    dict(mixer="full_attnres"),
    dict(mixer="block_attnres", n_blocks=3, two_phase=False),
    dict(mixer="block_attnres", n_blocks=3, two_phase=True),
    dict(mixer="denseformer"),
    dict(mixer="hyper"),
    dict(mixer="hyper", mhc=True),
]


def small(**overrides) -> ModelConfig:
    base = dict(vocab_size=64, d_model=32, n_layers=5, n_heads=4, max_seq_len=32)
    base.update(overrides)
    return ModelConfig(**base)


def build(seed: int = 0, **overrides) -> DepthTransformer:
    torch.manual_seed(seed)
    return DepthTransformer(small(**overrides))


def randomise_depth_parameters(model: DepthTransformer, seed: int = 1) -> None:
    """Move every mixer parameter off its initial value, so equalities are not trivially true at init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.mixer.parameters():
            param.add_(torch.randn(param.shape, generator=gen, dtype=param.dtype) * 0.5)


def capture(model: DepthTransformer, tokens: torch.Tensor, what: str) -> dict[int, torch.Tensor]:
    """Run a forward pass; return {sublayer: tensor seen by the tap of kind `what`}."""
    seen: dict[int, torch.Tensor] = {}
    handles = [
        tap.register_forward_hook(lambda mod, args, out: seen.__setitem__(mod.sublayer, out.detach().clone()))
        for _, tap in iter_taps(model, what)
    ]
    try:
        model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def tokens(batch: int = 2, length: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("overrides", [dict(mixer="full_attnres"), dict(mixer="block_attnres", n_blocks=3, two_phase=False),
                                       dict(mixer="block_attnres", n_blocks=3, two_phase=True)])
def test_attnres_weights_start_uniform_over_valid_sources(overrides):
    model = build(**overrides)
    alphas = capture(model, tokens(), "alpha")
    assert sorted(alphas) == list(range(1, model.cfg.n_sublayers + 2))
    for sublayer, alpha in alphas.items():
        n = alpha.shape[-1]
        torch.testing.assert_close(alpha, torch.full_like(alpha, 1.0 / n), msg=f"sublayer {sublayer}")


def test_full_attnres_matches_hand_computation():
    """h_l = sum_i softmax_i(w_l . g_l * RMSNorm(v_i)) v_i over the embedding and earlier OUTPUTS, no 1/sqrt(d)."""
    model = build(mixer="full_attnres").double()
    randomise_depth_parameters(model)
    x = tokens()
    inputs, outputs, alphas = (capture(model, x, w) for w in ("input", "output", "alpha"))
    sources = [model.embed(x).detach()]
    queries, gains = model.mixer.depth.queries.detach(), model.mixer.depth.key_gains.detach()
    for l in range(1, model.cfg.n_sublayers + 1):
        keys = torch.stack([unit_rms(v) * gains[l - 1] for v in sources], dim=-2)  # [b, t, l, d]
        alpha = torch.softmax(keys @ queries[l - 1], dim=-1)  # [b, t, l]
        expected = (alpha.unsqueeze(-1) * torch.stack(sources, dim=-2)).sum(-2)
        torch.testing.assert_close(alphas[l], alpha, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(inputs[l], expected, rtol=1e-10, atol=1e-12)
        if l > 1:
            assert alpha.std() > 1e-3, "weights should not be uniform after randomising the queries"
        sources.append(outputs[l])


@pytest.mark.parametrize("two_phase", [False, True])
def test_block_attnres_matches_hand_computation_with_short_last_block(two_phase):
    model = build(mixer="block_attnres", n_blocks=3, two_phase=two_phase).double()  # L = 10, S = 4: blocks 1-4, 5-8, 9-10
    assert model.cfg.block_bounds == [(1, 4), (5, 8), (9, 10)]
    randomise_depth_parameters(model)
    x = tokens()
    inputs, outputs, alphas = (capture(model, x, w) for w in ("input", "output", "alpha"))
    queries, gains = model.mixer.depth.queries.detach(), model.mixer.depth.key_gains.detach()
    blocks, partial = [model.embed(x).detach()], None
    for first, last in model.cfg.block_bounds:
        for l in range(first, last + 1):
            values = blocks + ([partial] if l > first else [])
            logits = torch.stack([(unit_rms(v) * gains[l - 1]) @ queries[l - 1] for v in values], dim=-1)
            alpha = torch.softmax(logits, dim=-1)
            torch.testing.assert_close(alphas[l], alpha, rtol=1e-10, atol=1e-12)
            expected = (alpha.unsqueeze(-1) * torch.stack(values, dim=-2)).sum(-2)
            torch.testing.assert_close(inputs[l], expected, rtol=1e-10, atol=1e-12)
            partial = outputs[l] if l == first else partial + outputs[l]
        blocks.append(partial)
    final = torch.softmax(torch.stack([(unit_rms(b) * gains[-1]) @ queries[-1] for b in blocks], -1), -1)
    torch.testing.assert_close(alphas[model.cfg.n_sublayers + 1], final, rtol=1e-10, atol=1e-12)


def test_source_counts_and_labels_full_and_block():
    full = build(mixer="full_attnres")
    labels = {tap.sublayer: tap.labels for _, tap in iter_taps(full, "alpha")}
    assert labels[1] == ("emb",)
    assert labels[4] == ("emb", "attn1", "mlp1", "attn2")
    assert labels[11] == ("emb",) + tuple(f"{k}{i}" for i in range(1, 6) for k in ("attn", "mlp"))
    assert [len(labels[l]) for l in range(1, 12)] == list(range(1, 12))

    block = build(mixer="block_attnres", n_blocks=3)  # blocks 1-4, 5-8, 9-10 (short last block)
    labels = {tap.sublayer: tap.labels for _, tap in iter_taps(block, "alpha")}
    assert labels[1] == ("emb",)  # first sublayer of a block: completed blocks only, no partial
    assert labels[2] == ("emb", "partial")
    assert labels[4] == ("emb", "partial")
    assert labels[5] == ("emb", "block1")
    assert labels[6] == ("emb", "block1", "partial")
    assert labels[9] == ("emb", "block1", "block2")
    assert labels[10] == ("emb", "block1", "block2", "partial")
    assert labels[11] == ("emb", "block1", "block2", "block3")
    alphas = capture(block, tokens(), "alpha")
    assert all(alphas[l].shape[-1] == len(labels[l]) for l in labels)


def test_block_size_rules():
    assert ModelConfig(n_layers=16, n_blocks=8).block_size == 4
    assert ModelConfig(n_layers=8, n_blocks=8).block_size == 2
    assert ModelConfig(n_layers=8, n_blocks=16).block_size == 1  # N = L: Full AttnRes
    assert ModelConfig(n_layers=6, n_blocks=4).block_size == 4  # ceil(12/4)=3 rounded up to start at attention
    assert ModelConfig(n_layers=6, n_blocks=4).block_bounds == [(1, 4), (5, 8), (9, 12)]
    assert all(first % 2 == 1 for first, _ in ModelConfig(n_layers=7, n_blocks=3).block_bounds)


@pytest.mark.parametrize("two_phase", [False, True])
def test_block_with_one_sublayer_per_block_equals_full(two_phase):
    full = build(mixer="full_attnres").double()
    randomise_depth_parameters(full)
    block = build(seed=5, mixer="block_attnres", n_blocks=full.cfg.n_sublayers, two_phase=two_phase).double()
    block.load_state_dict(full.state_dict())  # same parameter names: the same parameters
    x = tokens()
    torch.testing.assert_close(block(x), full(x), rtol=1e-10, atol=1e-10)
    full_alpha, block_alpha = capture(full, x, "alpha"), capture(block, x, "alpha")
    for l in full_alpha:
        torch.testing.assert_close(block_alpha[l], full_alpha[l], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grad", [True, False])  # without autograd the mixer writes in place and uses lookups
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 4, 10])
def test_two_phase_equals_plain_in_float64(n_blocks, grad):
    plain = build(mixer="block_attnres", n_blocks=n_blocks, two_phase=False).double()
    randomise_depth_parameters(plain)
    two = build(seed=9, mixer="block_attnres", n_blocks=n_blocks, two_phase=True).double()
    two.load_state_dict(plain.state_dict())
    x = tokens()
    with torch.set_grad_enabled(grad):
        assert (plain(x) - two(x)).abs().max().item() < 1e-10
        for what in ("alpha", "input", "partial"):
            seen = capture(two, x, what)
            for l, value in capture(plain, x, what).items():
                assert (seen[l] - value).abs().max().item() < 1e-10, (what, l)


@pytest.mark.parametrize("overrides", [dict(mixer="block_attnres", n_blocks=3), dict(mixer="full_attnres")])
def test_tensors_handed_to_hooks_are_never_overwritten_later(overrides):
    """A hook may keep what a tap hands it without copying; nothing the forward pass does later may change it."""
    model = build(**overrides)
    randomise_depth_parameters(model)
    x = tokens()
    kept: dict[tuple[str, int], torch.Tensor] = {}
    handles = [
        tap.register_forward_hook(lambda mod, args, out: kept.__setitem__((mod.what, mod.sublayer), out))
        for _, tap in iter_taps(model)
    ]
    with torch.no_grad():
        try:
            model(x)
        finally:
            for handle in handles:
                handle.remove()
        for what in ("alpha", "input", "output", "partial"):
            for l, value in capture(model, x, what).items():  # a second pass, copying as it goes
                torch.testing.assert_close(kept[what, l], value, rtol=0, atol=0, msg=f"{what} {l}")


@pytest.mark.parametrize("watched", [2, 3])  # the partial tap of one sublayer only: the first sum, or a later one
def test_a_partial_kept_by_a_hook_on_one_tap_is_never_overwritten_later(watched):
    model = build(mixer="block_attnres", n_blocks=2)  # L = 10: blocks 1-6 and 7-10, room for in-place sums
    randomise_depth_parameters(model)
    tap = next(tap for _, tap in iter_taps(model, "partial") if tap.sublayer == watched)
    kept = []
    handle = tap.register_forward_hook(lambda mod, args, out: kept.append((out, out.clone())))
    try:
        with torch.no_grad():
            model(tokens())
    finally:
        handle.remove()
    (held, copied), = kept
    torch.testing.assert_close(held, copied, rtol=0, atol=0)


def test_a_tap_knows_whether_anything_watches_it():
    tap = next(tap for _, tap in iter_taps(build(mixer="block_attnres"), "alpha"))
    assert not tap.watched
    handle = tap.register_forward_hook(lambda *args: None)
    assert tap.watched
    handle.remove()
    assert not tap.watched
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert tap.watched  # a global hook sees every module's output
    finally:
        handle.remove()


def test_residual_inputs_are_the_running_sum():
    model = build(mixer="residual")
    x = tokens()
    inputs, outputs = capture(model, x, "input"), capture(model, x, "output")
    stream = model.embed(x).detach()
    for l in range(1, model.cfg.n_sublayers + 1):
        torch.testing.assert_close(inputs[l], stream)
        stream = stream + outputs[l]
    alphas = capture(model, x, "alpha")
    assert all(torch.all(a == 1) and a.shape[-1] == l for l, a in alphas.items())


def test_denseformer_at_init_equals_residual_baseline():
    residual = build(mixer="residual")
    dense = build(seed=3, mixer="denseformer")
    missing, unexpected = dense.load_state_dict(residual.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("mixer.averages") for name in missing)
    x = tokens()
    torch.testing.assert_close(dense(x), residual(x))
    randomise_depth_parameters(dense)
    assert not torch.allclose(dense(x), residual(x)), "the averages must matter once they move"


def test_mhc_mixing_matrices_are_doubly_stochastic():
    model = build(mixer="hyper", mhc=True, sinkhorn_iters=100)
    randomise_depth_parameters(model)
    with torch.no_grad():  # make the input-dependent part matter too
        for conn in model.mixer.connections:
            conn.mix_proj.weight.normal_(std=0.5)
            conn.dynamic_scale.fill_(1.0)
    mixes = capture(model, tokens(), "mix")
    assert len(mixes) == model.cfg.n_sublayers
    for l, mix in mixes.items():
        # Sinkhorn ends on a column normalisation: columns are exact, rows within its 20-iteration tolerance.
        torch.testing.assert_close(mix.sum(-2), torch.ones_like(mix.sum(-2)), atol=1e-5, rtol=0)
        torch.testing.assert_close(mix.sum(-1), torch.ones_like(mix.sum(-1)), atol=1e-3, rtol=0)
        assert (mix >= 0).all() and mix.std() > 0.01
    # Streams start as identical copies, so the input-dependent part can only show once they differ.
    assert not torch.allclose(mixes[4][0, 0], mixes[4][0, 1]), "mixing should depend on the token"


def test_sinkhorn_converges_from_arbitrary_logits():
    logits = torch.randn(7, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    p = sinkhorn(logits, iters=500)
    torch.testing.assert_close(p.sum(-1), torch.ones(7, 5, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(p.sum(-2), torch.ones(7, 5, dtype=torch.float64), atol=1e-8, rtol=0)


def test_hyper_at_init_is_a_residual_network():
    """Static init (one-hot width, identity mixing, unit depth weights) sums to the baseline's stream."""
    residual = build(mixer="residual")
    hyper = build(seed=4, mixer="hyper", hyper_streams=1)
    hyper.load_state_dict(residual.state_dict(), strict=False)
    x = tokens()
    torch.testing.assert_close(hyper(x), residual(x))


@pytest.mark.parametrize("overrides", ALL_VARIANTS, ids=lambda o: "-".join(map(str, o.values())))
def test_causality(overrides):
    model = build(**overrides)
    randomise_depth_parameters(model)
    x = tokens(length=16)
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 7) % 64
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])


@pytest.mark.parametrize("overrides", ALL_VARIANTS, ids=lambda o: "-".join(map(str, o.values())))
def test_gradients_reach_every_parameter(overrides):
    model = build(**overrides)
    randomise_depth_parameters(model)
    logits = model(tokens())
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens(seed=1).flatten()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} receives no gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="unknown mixer"):
        ModelConfig(mixer="highway")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="max_seq_len"):
        build()(torch.zeros(1, 40, dtype=torch.long))


def test_sinkhorn_survives_extreme_logits():
    logits = torch.tensor([[0.0, -200.0], [-200.0, -500.0]])
    p = sinkhorn(logits, iters=20)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(-2), torch.ones(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mixer", ["full_attnres", "block_attnres"])
def test_a_hook_that_replaces_alpha_changes_the_mix_in_every_form(mixer):
    """Interventions on the alpha tap (here: uniform weights) act the same in the plain and two-phase forms."""
    x = tokens()
    outputs = []
    for two_phase in (False, True):
        model = build(mixer=mixer, n_blocks=3, two_phase=two_phase).double()
        randomise_depth_parameters(model)
        clean = model(x)
        handles = [tap.register_forward_hook(lambda mod, args, out: torch.full_like(out, 1.0 / out.shape[-1]))
                   for _, tap in iter_taps(model, "alpha")]
        try:
            patched = model(x)
        finally:
            for handle in handles:
                handle.remove()
        assert (patched - clean).abs().max() > 1e-3  # the intervention took effect
        outputs.append(patched)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mhc", [False, True])
def test_hyper_connection_dynamic_parts_follow_their_definition(mhc):
    """pre, post and R = static + scale * tanh(projection of RMSNorm(H)), checked against the plain ops."""
    model = build(mixer="hyper", mhc=mhc).double()
    randomise_depth_parameters(model)
    connection = model.mixer.connections[2]
    streams = torch.randn(2, 5, model.cfg.hyper_streams, model.cfg.d_model, dtype=torch.float64)
    pre, mix, post = connection(streams)
    normed = unit_rms(streams)
    scale = connection.dynamic_scale
    want_pre = connection.pre + scale[0] * torch.tanh(normed @ connection.pre_proj.weight[0])
    want_post = connection.post + scale[1] * torch.tanh(normed @ connection.post_proj.weight[0])
    want_mix = connection.mix + scale[2] * torch.tanh(normed @ connection.mix_proj.weight.T)
    if mhc:
        want_pre, want_post = torch.sigmoid(want_pre), 2 * torch.sigmoid(want_post)
        want_mix = sinkhorn(want_mix, model.cfg.sinkhorn_iters)
    for got, want in ((pre, want_pre), (post, want_post), (mix, want_mix)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sources", [1, 2, 9, 33])
def test_source_softmax_is_the_softmax_on_short_and_long_axes(sources):
    from depthscope.models.mixers.base import source_softmax

    logits = torch.randn(3, 5, 4, sources, dtype=torch.float64, generator=torch.Generator().manual_seed(sources)) * 30
    want = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(source_softmax(logits), want, rtol=1e-12, atol=1e-15)
    log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    torch.testing.assert_close(source_softmax(logits, log_norm), want, rtol=1e-12, atol=1e-15)
