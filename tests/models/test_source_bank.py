"""SourceBank and the fused key logits: hand-written backward passes equal autograd through the plain ops."""
from __future__ import annotations

import weakref

import pytest
import torch

from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.mixers.source_bank import SourceBank


def bank_mixes(values: list[torch.Tensor], weights: list[torch.Tensor], rows: int | None = None) -> list[torch.Tensor]:
    """Append sources only as the next mix needs them, so rows and sources interleave as in a model."""
    bank = SourceBank(len(values), rows=rows or sum(w.shape[-2] for w in weights))
    outs = []
    for w in weights:
        while bank.size < w.shape[-1]:
            bank.append(values[bank.size])
        outs.append(bank.mix(w))
    return outs


SHAPES = [(1, 1), (2, 2), (1, 3), (3, 4), (1, 4)]  # (rows, sources read) of each mix, in order


def test_gradcheck_interleaved_mixes():
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(4)]
    weights = [torch.randn(2, 3, r, n, dtype=torch.float64, generator=gen, requires_grad=True) for r, n in SHAPES]

    def total(*tensors):
        outs = bank_mixes(list(tensors[:4]), list(tensors[4:]))
        return sum(o.sin().sum() for o in outs)

    assert torch.autograd.gradcheck(total, values + weights)


@pytest.mark.parametrize("planned_rows", [None, 1])  # 1: the bank must grow its rows as mixes arrive
def test_values_and_gradients_match_a_stacked_reference(planned_rows):
    gen = torch.Generator().manual_seed(1)
    values = [torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(4)]
    weights = [torch.randn(2, 3, r, n, dtype=torch.float64, generator=gen, requires_grad=True) for r, n in SHAPES]
    leaves = values + weights

    outs = bank_mixes(values, weights, planned_rows)
    bank_grads = torch.autograd.grad(sum(o.square().sum() for o in outs), leaves)
    reference = [w @ torch.stack(values[: w.shape[-1]], dim=-2) for w in weights]
    reference_grads = torch.autograd.grad(sum(o.square().sum() for o in reference), leaves)
    for out, ref in zip(outs, reference):
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(bank_grads, reference_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


class StackedBank(SourceBank):
    """Reference: keep sources in a list and let autograd differentiate stack + matmul."""

    def append(self, value: torch.Tensor) -> None:
        self.values_list = getattr(self, "values_list", []) + [value]
        self.size += 1

    def mix(self, weights: torch.Tensor) -> torch.Tensor:
        return weights @ torch.stack(self.values_list[: weights.shape[-1]], dim=-2)

    def mix_each(self, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.mix(weights).unbind(-2)


VARIANTS = [dict(mixer="full_attnres"), dict(mixer="block_attnres", n_blocks=3, two_phase=False),
            dict(mixer="block_attnres", n_blocks=3, two_phase=True)]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_model_gradients_match_stacked_reference(overrides, monkeypatch):
    import depthscope.models.mixers.block_attnres as block_module
    import depthscope.models.mixers.full_attnres as full_module

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, d_model=16, n_layers=5, n_heads=2, max_seq_len=16, **overrides)
    model = DepthTransformer(cfg).double()
    with torch.no_grad():
        for param in model.mixer.parameters():
            param.add_(torch.randn_like(param) * 0.5)  # non-uniform weights, so every path matters
    x = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.roll(-1, 1).flatten())
        loss.backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits, grads = loss_and_grads()
    with torch.no_grad():  # the inference path writes straight into the buffer
        torch.testing.assert_close(model(x), logits, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(full_module, "SourceBank", StackedBank)
    monkeypatch.setattr(block_module, "SourceBank", StackedBank)
    ref_logits, ref_grads = loss_and_grads()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-12, atol=1e-12)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_rows_mixed_one_by_one_have_the_joint_gradients_even_when_some_rows_are_unused():
    gen = torch.Generator().manual_seed(4)
    values = [torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(4)]
    weights = [torch.randn(2, 3, r, n, dtype=torch.float64, generator=gen, requires_grad=True) for r, n in SHAPES]
    leaves = values + weights
    bank = SourceBank(4, rows=sum(w.shape[-2] for w in weights))
    rows = []
    for w in weights:
        while bank.size < w.shape[-1]:
            bank.append(values[bank.size])
        rows.append(bank.mix_each(w))
    used = [row for each in rows for row in each[::2]]  # every other row of each mix takes no part in the loss
    got = torch.autograd.grad(sum(r.square().sum() for r in used), leaves)
    reference = [(w @ torch.stack(values[: w.shape[-1]], dim=-2)).unbind(-2)[::2] for w in weights]
    want = torch.autograd.grad(sum(r.square().sum() for each in reference for r in each), leaves)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_a_gradient_buffer_is_reused_only_after_its_bank_is_gone():
    from depthscope.models.mixers import source_bank

    values = [torch.randn(2, 3, 5, requires_grad=True) for _ in range(2)]
    weights = torch.randn(2, 3, 2, 2)

    def backward_once() -> tuple[torch.Tensor, SourceBank, torch.Tensor]:
        bank = SourceBank(2, rows=2)
        for v in values:
            bank.append(v)
        out = bank.mix(weights)
        grad = torch.autograd.grad(out.sum(), values[0])[0]
        return grad, bank, bank.grads

    source_bank._SPARE_GRADIENT_BUFFERS.spare.clear()
    first_grad, first_bank, first_buffer = backward_once()
    second_grad, second_bank, second_buffer = backward_once()  # the first bank still lives: a buffer of its own
    assert second_buffer.data_ptr() != first_buffer.data_ptr()
    gone = weakref.ref(first_bank)
    del first_bank, second_bank
    assert gone() is None  # freed at once, without waiting for the garbage collector
    third_grad, _, third_buffer = backward_once()
    assert third_buffer.data_ptr() in (first_buffer.data_ptr(), second_buffer.data_ptr())
    torch.testing.assert_close(first_grad, third_grad)
    torch.testing.assert_close(first_grad, weights.sum(-2)[..., :1] * torch.ones(2, 3, 5))


def test_readers_left_out_of_a_backward_pass_count_as_zero_across_retained_passes():
    gen = torch.Generator().manual_seed(3)
    values = [torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(4)]
    weights = [torch.randn(2, 3, r, n, dtype=torch.float64, generator=gen) for r, n in SHAPES]
    outs = bank_mixes(values, weights)
    reference = [w @ torch.stack(values[: w.shape[-1]], dim=-2) for w in weights]
    # Each pass reaches a different subset of readers; the graph is kept between passes.
    for subset in ([0, 1, 2, 3, 4], [1, 3], [4], [0, 2]):
        got = torch.autograd.grad(sum(outs[i].cos().sum() for i in subset), values, retain_graph=True,
                                  allow_unused=True)
        want = torch.autograd.grad(sum(reference[i].cos().sum() for i in subset), values, retain_graph=True,
                                   allow_unused=True)
        for g, w in zip(got, want):
            torch.testing.assert_close(g if g is not None else torch.zeros_like(values[0]),
                                       w if w is not None else torch.zeros_like(values[0]), rtol=1e-12, atol=1e-12)


def test_fused_key_logits_match_rms_norm_then_matmul():
    from depthscope.models.layers import unit_rms
    from depthscope.models.mixers.key_logits import key_logits

    gen = torch.Generator().manual_seed(4)
    values = torch.randn(2, 3, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    queries = torch.randn(4, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.testing.assert_close(key_logits(values, queries), unit_rms(values) @ queries.T, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(key_logits, (values, queries))
    assert torch.autograd.gradcheck(key_logits, (values * 1e-4, queries))  # tiny keys: eps matters


@pytest.mark.parametrize("mixer", ["full_attnres", "block_attnres"])
def test_a_training_step_leaves_no_bank_for_the_garbage_collector(mixer, monkeypatch):
    import gc

    from depthscope.models.mixers import source_bank

    banks: list[weakref.ref] = []
    init = source_bank.SourceBank.__init__

    def tracked_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        banks.append(weakref.ref(self))

    monkeypatch.setattr(source_bank.SourceBank, "__init__", tracked_init)
    model = DepthTransformer(ModelConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, max_seq_len=16, mixer=mixer))
    x = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    gc.disable()
    try:
        for _ in range(2):
            loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
            loss.backward()
        del loss
        assert len(banks) == 2 and all(bank() is None for bank in banks)  # buffers go back as the step ends
    finally:
        gc.enable()
