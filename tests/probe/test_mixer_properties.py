"""What a mixer kind allows travels with the run: the manifest's model.properties, written when the run is
recorded and read back by the reader and the analyses; runs recorded before get them from the vocabulary's table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthscope.analyses.runs import MemoryRun, mixer_kind
from depthscope.analyses.sources import run_geometry
from depthscope.models import DepthTransformer, ModelConfig
from depthscope.models.vocabulary import MIXERS, FOREIGN, kind_named
from depthscope.probe import Probe, RunWriter, open_run

torch.set_num_threads(1)


def record(path, model, vocab=256):
    x = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))
    with Probe(model, out=RunWriter(path, chunk_tokens=16)) as probe:
        model(x)
        probe.commit(targets=x)
    return open_run(path)


@pytest.mark.parametrize("mixer", MIXERS)
def test_a_recorded_run_carries_its_mixer_kinds_properties(tmp_path, mixer):
    torch.manual_seed(0)
    model = DepthTransformer(ModelConfig(mixer=mixer, n_layers=2, d_model=16, n_heads=2, max_seq_len=16, n_blocks=2))
    run = record(tmp_path / "run", model)
    written = json.loads((tmp_path / "run" / "manifest.json").read_text())["model"]["properties"]
    assert written == kind_named(mixer).to_dict() and written["name"] == mixer
    assert run.mixer_kind == kind_named(mixer) == mixer_kind(run)
    assert run_geometry(run).unit == kind_named(mixer).unit


def test_runs_recorded_before_the_properties_read_them_from_the_table(repo_root):
    for path in sorted((repo_root / "assets/demo/runs").iterdir()):
        run = open_run(path)
        assert "properties" not in run.model  # nothing on disk was rewritten
        assert run.mixer_kind == kind_named(run.model["kind"])
        assert run_geometry(run).unit == run.mixer_kind.unit


def test_a_model_probed_through_an_adapter_is_foreign_with_the_unit_its_labels_imply(tmp_path):
    attn_res = pytest.importorskip("attn_res")
    cfg = attn_res.TransformerConfig(d_model=16, n_layers=4, n_heads=2, n_kv_heads=1, vocab_size=40, max_seq_len=16,
                                     attn_res_mode=attn_res.AttnResMode("block"), n_blocks=2)
    torch.manual_seed(0)
    run = record(tmp_path / "run", attn_res.AttnResTransformer(cfg), vocab=40)
    kind = run.mixer_kind
    assert run.model["properties"] == kind.to_dict()
    assert (kind.name, kind.unit, kind.nonnegative, kind.causal_check, kind.family) == \
        ("AttnResTransformer", "blocks", False, False, FOREIGN)
    assert any("partial" in labels for labels in run.source_labels)


def test_memory_runs_take_the_unit_of_their_kind():
    labels = [["emb"], ["emb", "partial"], ["emb", "block1"]]
    alpha = np.full((4, 3, 2), 0.5, dtype=np.float32)
    alpha[:, 0, 1] = np.nan
    alpha[:, 0, 0] = 1.0
    assert mixer_kind(MemoryRun(alpha=alpha, source_labels=labels, kind="block_attnres")) == kind_named("block_attnres")
    unknown = MemoryRun(alpha=alpha, source_labels=labels)
    assert mixer_kind(unknown).unit == "blocks" and not mixer_kind(unknown).nonnegative
    # the kind decides the unit: the same labels under a kind counted in sublayers have no block distances
    geo = run_geometry(MemoryRun(alpha=alpha, source_labels=labels, kind="full_attnres"))
    assert geo.unit == "sublayers" and np.isnan(geo.distance[1, 1]) and geo.distance[0, 0] == 1
    assert run_geometry(unknown).distance[2].tolist() == [2.0, 1.0]
