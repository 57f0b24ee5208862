"""The effective mixing matrix of every mixer, from recorded weights and from models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from depthscope.analyses import AnalysisError, MemoryRun
from depthscope.analyses.mixing import (
    effective_rank, mixing_from_model, mixing_from_run, mixing_from_weights, numerical_rank, row_normalise,
)
from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.vocabulary import sublayer_label

torch.set_num_threads(1)


def model(mixer, **kw):
    torch.manual_seed(0)
    return DepthTransformer(ModelConfig(mixer=mixer, n_layers=3, d_model=16, n_heads=2, max_seq_len=16, **kw))


TOKENS = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(0))


def test_residual_is_ones_below_the_diagonal():
    m = mixing_from_model(model("residual"), TOKENS)
    L = 6
    assert np.array_equal(m.matrix, np.tril(np.ones((L + 1, L + 1))))
    assert np.allclose(m.normalised.sum(1), 1.0) and np.allclose(m.normalised[3, :4], 0.25)
    assert m.ranks()["rank"] == L
    frame = m.frame()
    assert len(frame) == (L + 1) * (L + 2) // 2 and set(frame["kind"]) == {"attn", "mlp", "final"}


def test_full_attnres_matrix_equals_alpha():
    L = 4
    labels = [[sublayer_label(i) for i in range(l)] for l in range(1, L + 2)]
    rng = np.random.default_rng(0)
    alpha = np.full((10, L + 1, L + 1), np.nan, dtype=np.float32)
    for l in range(1, L + 2):
        alpha[:, l - 1, :l] = rng.dirichlet(np.ones(l), size=10)
    run = MemoryRun(alpha=alpha, source_labels=labels, sublayers=list(range(1, L + 2)), kind="full_attnres",
                    config=ModelConfig(mixer="full_attnres", n_layers=2).to_dict())
    m = mixing_from_run(run)
    assert np.allclose(np.nan_to_num(m.matrix), np.nan_to_num(alpha).mean(0), atol=1e-6)
    assert np.allclose(m.matrix[np.triu_indices(L + 1, 1)], 0.0)


def test_block_attnres_shares_a_blocks_weight_across_its_outputs():
    cfg = ModelConfig(mixer="block_attnres", n_layers=3, n_blocks=3)  # L = 6, S = 2: blocks (1,2) (3,4) (5,6)
    labels = [["emb"], ["emb", "partial"], ["emb", "block1"], ["emb", "block1", "partial"], ["emb", "block1", "block2"],
              ["emb", "block1", "block2", "partial"], ["emb", "block1", "block2", "block3"]]
    w = np.full((7, 4), np.nan)
    for i, row in enumerate(labels):
        w[i, : len(row)] = np.arange(1, len(row) + 1) / 10
    m = mixing_from_weights(labels, list(range(1, 8)), w, 6, "block_attnres", cfg.to_dict())
    M = m.matrix
    assert np.allclose(M[3], [0.1, 0.2, 0.2, 0.3, 0, 0, 0])  # mlp2: emb, block1 on outputs 1-2, partial on output 3
    assert np.allclose(M[5], [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0])  # mlp3
    assert np.allclose(M[6], [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4])  # final: block3 on outputs 5, 6
    # and from a model: the same structure
    mm = mixing_from_model(model("block_attnres", n_blocks=3), TOKENS).matrix
    assert mm[5, 1] == pytest.approx(mm[5, 2]) and mm[5, 3] == pytest.approx(mm[5, 4])


@pytest.mark.parametrize("kw", [{}, {"mhc": True}])
def test_hyper_connections_at_init_reduce_to_the_residual(kw):
    m = mixing_from_model(model("hyper", **kw), TOKENS)
    L = 6
    body = m.matrix[:L, :L + 1]
    scale = body[0, 0]  # 1 for HC; sum of sigmoid pre weights for mHC
    assert np.allclose(body, scale * np.tril(np.ones((L, L + 1))), atol=1e-6)
    assert np.allclose(m.matrix[L], 4.0)  # the final output sums the 4 streams, each the full residual sum
    assert np.allclose(m.normalised[:L], row_normalise(np.tril(np.ones((L + 1, L + 1))))[:L])
    with pytest.raises(AnalysisError, match="mixing_from_model"):
        mixing_from_weights([["stream1", "stream2"]], [1], np.ones((1, 2)), 2, "hyper")


def test_denseformer_at_init_is_the_residual_and_unrolls_its_averages():
    assert np.allclose(mixing_from_model(model("denseformer"), TOKENS).matrix, np.tril(np.ones((7, 7))))
    labels = [["emb", "layer1"], ["emb", "layer1", "layer2"], ["emb", "layer1", "layer2", "layer3"]]
    w = np.array([[0.5, 0.5, np.nan, np.nan], [0.0, 0.0, 1.0, np.nan], [1.0, 0.0, 0.0, 0.0]])
    M = mixing_from_weights(labels, [3, 5, 7], w, 6, "denseformer").matrix
    # after block 1: x = 0.5 v0 + 0.5 (v0 + v1 + v2) = v0 + 0.5 v1 + 0.5 v2
    assert np.allclose(M[2], [1, 0.5, 0.5, 0, 0, 0, 0]) and np.allclose(M[3], [1, 0.5, 0.5, 1, 0, 0, 0])
    assert np.allclose(M[6], [1, 0, 0, 0, 0, 0, 0])  # the last average keeps the embedding only


def test_effective_rank():
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)
    assert effective_rank(np.ones((4, 4))) == pytest.approx(1.0)
    assert numerical_rank(np.ones((4, 4))) == 1 and effective_rank(np.zeros((3, 3))) == 0.0
