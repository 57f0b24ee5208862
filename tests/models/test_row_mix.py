"""mix_rows: the embedding-bag lookup it runs without autograd equals the batched matmul on every layout."""
from __future__ import annotations

import pytest
import torch

from depthscope.models.mixers.row_mix import _row_table, mix_rows


def reference(weights: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    return (weights.unsqueeze(-1) * sources.unsqueeze(-3)).sum(-2)  # [..., rows, n, d] summed over n


def layouts(gen: torch.Generator) -> dict[str, torch.Tensor]:
    buffer = torch.randn(2, 5, 7, 6, dtype=torch.float64, generator=gen)  # [batch, tokens, capacity, d]
    return {
        "contiguous": torch.randn(2, 5, 3, 6, dtype=torch.float64, generator=gen),
        "first n of a bank": buffer[..., :3, :],
        "rows from an offset": buffer[..., 2:6, :],  # a bank's gradient rows of one source's readers
        "one source": buffer[..., :1, :],
        "one token": buffer[:1, :1, :4, :],
        "strided d (falls back)": buffer[..., :3, ::2],
        "broadcast tokens (falls back)": buffer[:, :1, :3, :].expand(2, 5, 3, 6),
    }


@pytest.mark.parametrize("rows", [1, 4])
def test_equals_the_weighted_sum_on_every_layout(rows):
    gen = torch.Generator().manual_seed(0)
    for name, sources in layouts(gen).items():
        weights = torch.randn(*sources.shape[:-2], rows, sources.shape[-2], dtype=torch.float64, generator=gen)
        with torch.no_grad():
            got = mix_rows(weights, sources)
        torch.testing.assert_close(got, reference(weights, sources), rtol=1e-12, atol=1e-12, msg=name)
        with torch.no_grad():
            each = mix_rows(weights, sources, rows_first=True)  # [rows, batch, tokens, d]
        torch.testing.assert_close(each, reference(weights, sources).movedim(-2, 0), rtol=1e-12, atol=1e-12,
                                   msg=name)
        if _row_table(sources) is not None:
            assert all(row.is_contiguous() for row in each.unbind(0)), name


def test_lookup_is_used_where_the_layout_allows_and_only_there():
    gen = torch.Generator().manual_seed(1)
    found = {name: _row_table(sources) is not None for name, sources in layouts(gen).items()}
    assert found == {
        "contiguous": True, "first n of a bank": True, "rows from an offset": True, "one source": True,
        "one token": True, "strided d (falls back)": False, "broadcast tokens (falls back)": False,
    }
    table, step = _row_table(layouts(gen)["first n of a bank"])
    assert step == 7 and table.shape == (9 * 7 + 3, 6)  # no copy: tokens 7 rows apart in the bank's buffer


def test_float32_and_autograd_paths_agree():
    gen = torch.Generator().manual_seed(2)
    buffer = torch.randn(3, 64, 9, 32, generator=gen)
    sources, weights = buffer[..., :5, :], torch.softmax(torch.randn(3, 64, 4, 5, generator=gen), -1)
    with torch.no_grad():
        lookup = mix_rows(weights, sources)
    tracked = weights.clone().requires_grad_()
    matmul = mix_rows(tracked, sources)  # under autograd: the matmul, differentiable
    torch.testing.assert_close(lookup, matmul.detach(), rtol=1e-6, atol=1e-6)
    matmul.sum().backward()
    torch.testing.assert_close(tracked.grad, sources.sum(-1).unsqueeze(-2).expand_as(tracked), rtol=1e-5, atol=1e-5)


def test_index_cache_stays_within_its_budget_and_rebuilds_what_it_dropped():
    from depthscope.models.mixers.row_mix import _BagCache, _bags

    cache = _BagCache(budget=1 << 16)  # 64 KiB
    for n in range(1, 9):
        indices, offsets = cache.get(256, 4, n, 9, True, torch.device("cpu"))
        want_indices, want_offsets = _bags(256, 4, n, 9, True, torch.device("cpu"))
        assert torch.equal(indices, want_indices) and torch.equal(offsets, want_offsets)
        assert cache._bytes() <= 1 << 16 or len(cache.kept) == 1
    assert len(cache.kept) < 8  # the oldest shapes were dropped
    assert torch.equal(cache.get(256, 4, 1, 9, True, torch.device("cpu"))[0], _bags(256, 4, 1, 9, True, torch.device("cpu"))[0])
