"""The one vocabulary (depthscope.models.vocabulary): importable without torch, and the labels it makes are the
ones on disk, byte for byte (the demo bundle's runs were recorded before it existed)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from depthscope.models import vocabulary as V
from depthscope.models.config import ModelConfig


def test_the_vocabulary_and_the_model_config_import_without_torch(clean_env):
    code = ("import sys\n"
            "import depthscope.models.vocabulary, depthscope.models.config\n"
            "from depthscope.models import MIXERS, ModelConfig, sublayer_label\n"
            "assert MIXERS == depthscope.models.vocabulary.MIXERS and ModelConfig(mixer='hyper').mixer == 'hyper'\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "from depthscope.models import DepthTransformer\n"  # names needing torch still resolve, on first use
            "assert 'torch' in sys.modules and DepthTransformer.__name__ == 'DepthTransformer'\n")
    done = subprocess.run([sys.executable, "-c", code], env=clean_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_sublayer_and_source_labels_read_as_before():
    assert [V.sublayer_label(i) for i in range(6)] == ["emb", "attn1", "mlp1", "attn2", "mlp2", "attn3"]
    assert [V.axis_label(i, 4) for i in (1, 4, 5)] == ["attn1", "mlp2", "final"]
    assert V.sublayer_kinds(["attn3", "mlp10", "final", "sub2"]) == ["attn", "mlp", "final", "sub2"]
    assert V.full_sources(3) == ["emb", "attn1", "mlp1"] and V.generic_sources(3) == ["emb", "sub1", "sub2"]
    assert V.block_sources(3, True) == ["emb", "block1", "block2", "partial"] and V.block_sources(1, False) == ["emb"]
    assert V.layer_sources(3) == ["emb", "layer1", "layer2"] and V.stream_sources(2) == ["stream1", "stream2"]


def test_every_label_made_parses_back_to_its_source():
    for i in range(40):
        assert V.source_sublayer(V.sublayer_label(i)) == i
        assert V.parse_source(f"sub{i}") == V.Source("sublayer", i)
    assert [V.source_sublayer(s) for s in V.layer_sources(4)] == [0, 2, 4, 6]  # layer{j} leaves after sublayer 2j
    assert [V.block_number(s) for s in V.block_sources(4, True)] == [None, 1, 2, 3, None]
    assert V.parse_source("partial") == V.Source("partial", 0) and V.parse_source("stream3") == V.Source("stream", 3)
    assert V.source_sublayer("block2") is None and V.source_sublayer("stream1") is None
    for junk in ("attn", "mlpx", "Emb", "block", "final", ""):
        assert V.parse_source(junk) is None and V.source_sublayer(junk) is None
    assert V.unit_of_labels([V.block_sources(2, True)]) == "blocks"
    assert V.unit_of_labels([V.stream_sources(4)]) == "none"
    assert V.unit_of_labels([V.full_sources(5), [], V.layer_sources(3)]) == "sublayers" == V.unit_of_labels([])


@pytest.mark.parametrize("mixer", V.MIXERS)
def test_the_demo_bundles_labels_are_what_the_vocabulary_makes(repo_root, mixer):
    """Each demo run's sublayer and source labels equal those of a model built from its config, laid out by the
    probe: labels on disk did not change."""
    torch = pytest.importorskip("torch")
    from depthscope.models import DepthTransformer
    from depthscope.probe.layout import build_layout, default_label, tap_specs

    manifests = [json.loads(p.read_text()) for p in sorted((repo_root / "assets/demo/runs").glob("*/manifest.json"))]
    manifests = [m for m in manifests if m["model"]["kind"] == mixer]
    assert manifests, f"the demo bundle holds no {mixer} run"
    for manifest in manifests:
        cfg = ModelConfig.from_dict(manifest["model"]["config"])
        model = DepthTransformer(cfg)
        layout, _ = build_layout(tap_specs(model), ("alpha", "input", "output"), manifest["sublayers"], False, None,
                                 torch.float16, default_label(cfg.n_sublayers))
        assert layout.sublayer_labels == manifest["sublayer_labels"]
        assert layout.source_labels == manifest["source_labels"]


def test_each_mixer_kind_is_declared_once_with_what_the_code_branches_on():
    assert V.MIXERS == ("residual", "full_attnres", "block_attnres", "denseformer", "hyper")
    nonneg = [k for k in V.MIXERS if V.kind_named(k).nonnegative]
    causal = [k for k in V.MIXERS if V.kind_named(k).causal_check]
    assert nonneg == causal == ["residual", "full_attnres", "block_attnres"]
    assert {k: V.kind_named(k).unit for k in V.MIXERS} == {"residual": "sublayers", "full_attnres": "sublayers",
                                                            "block_attnres": "blocks", "denseformer": "sublayers",
                                                            "hyper": "none"}
    assert [k for k in V.MIXERS if V.kind_named(k).additive] == ["residual"]
    assert [k for k in V.MIXERS if not V.kind_named(k).weights_give_mixing] == ["hyper"]
    assert [k for k in V.MIXERS if V.kind_named(k).family == V.BASELINE] == ["residual"]
    assert [k for k in V.MIXERS if V.kind_named(k).family == V.ATTNRES] == ["full_attnres", "block_attnres"]
    assert sorted(V.MIXERS, key=lambda k: V.kind_named(k).rank) == \
        ["block_attnres", "full_attnres", "denseformer", "hyper", "residual"]
    config_fields = {f.name for f in fields(ModelConfig)}
    for name in V.MIXERS:
        assert set(V.kind_named(name).options) <= config_fields
    with pytest.raises(ValueError, match="unknown mixer 'attnres'"):
        V.kind_named("attnres")
    with pytest.raises(ValueError, match="unknown mixer"):
        ModelConfig(mixer="attnres")
    with pytest.raises(ValueError, match="unit 'layers'"):
        V.MixerKind("x", unit="layers")


def test_a_kind_is_read_from_the_manifest_then_the_table_then_the_labels():
    block = V.kind_named("block_attnres")
    assert V.MixerKind.from_dict(json.loads(json.dumps(block.to_dict()))) == block
    # written by the recording wins, even over the table (a run keeps what was true when it was recorded)
    written = {**block.to_dict(), "causal_check": False, "a_key_from_a_newer_version": 1}
    assert V.kind_of_model({"kind": "block_attnres", "properties": written}).causal_check is False
    # runs recorded before: the table by mixer name, whatever the labels
    assert V.kind_of_model({"kind": "hyper"}, [V.full_sources(3)]) == V.kind_named("hyper")
    # a model probed through an adapter, recorded before: signed, no causal check, the unit its labels imply
    foreign = V.kind_of_model({"kind": "AttnResTransformer"}, [V.block_sources(2, True)])
    assert (foreign.name, foreign.unit, foreign.nonnegative, foreign.causal_check, foreign.family) == \
        ("AttnResTransformer", "blocks", False, False, V.FOREIGN)
    assert V.kind_of_model(None, [V.stream_sources(2)]) == V.MixerKind("unknown", unit="none")


def test_token_labels_of_a_vocabulary():
    # (the byte-level labels, and ByteTokenizer's agreeing with them: tests/probe/test_run_vocabulary.py)
    vocabulary = [" the", "a\nb", "", "\x07", "é"]
    assert V.token_labels(range(-1, 6), vocabulary) == ["", " the", "a\\nb", "<2>", "<07>", "é", "<5>"]
    assert V.token_label(3, None, byte_level=False) == "<3>" and V.token_label(3) == V.byte_token_label(3) == "<03>"
