"""Runs of models depthscope did not build, end to end: an attn-res Block AttnRes model (`record --model`, and its
training recorded step by step) and a Hugging Face Llama-style model (`record --hf`), both over the same
subword tokenizer; `analyze` of each against the other, `export`, and every dashboard page in Chromium."""
from __future__ import annotations

import shutil
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from depthscope.cli import main
from depthscope.probe import open_run

FACTORY = textwrap.dedent('''
    import torch
    from transformers import AutoTokenizer
    from attn_res import AttnResMode, AttnResTransformer, TransformerConfig

    def attnres_block():
        """attn-res's Block AttnRes (4 blocks of 2 sublayers) over the tiny folder's subword tokenizer."""
        tokenizer = AutoTokenizer.from_pretrained({folder!r}, local_files_only=True)
        torch.manual_seed(0)
        model = AttnResTransformer(TransformerConfig(
            d_model=32, n_layers=8, n_heads=4, n_kv_heads=2, vocab_size=len(tokenizer), max_seq_len=128,
            attn_res_mode=AttnResMode.BLOCK, n_blocks=4))
        with torch.no_grad():  # pseudo-queries start at zero (uniform routing): give them a direction
            for name, p in model.named_parameters():
                if name.endswith("pseudo_query"):
                    p.normal_(0.0, 0.5)
        return model, tokenizer
''')


@pytest.fixture(scope="module")
def foreign_runs(tmp_path_factory, tiny_hf_folder):
    """runs/attnres, runs/llama (2048 tokens of pydoc each, with gradients) and runs/attnres-training/step_*."""
    root = tmp_path_factory.mktemp("foreign")
    (root / "foreign_factories.py").write_text(FACTORY.format(folder=str(tiny_hf_folder)))
    runs = root / "runs"
    common = ["--corpus", "pydoc", "--tokens", "2048", "--seq-len", "64", "--batch-size", "8", "--grads",
              "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        assert main(["record", "--model", "foreign_factories:attnres_block", "--out", str(runs / "attnres"),
                     *common]) == 0
        assert main(["record", "--hf", str(tiny_hf_folder), "--out", str(runs / "llama"), *common]) == 0
        import foreign_factories

        train_attnres(foreign_factories.attnres_block, runs / "attnres-training")
    return runs


def train_attnres(factory, out):
    """A few optimiser steps of the attn-res model in a plain loop, every 2nd step recorded into its own run."""
    from depthscope.models.data import load_corpus
    from depthscope.probe.training import StepRecorder
    from depthscope.probe.token_text import encode, text_of_ids

    model, tokenizer = factory()
    model.train()
    ids = torch.as_tensor(encode(tokenizer, "\n".join(load_corpus("pydoc").documents[:30])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    recorder = StepRecorder(out, every=2, vocabulary=text_of_ids(tokenizer), key="attnres-training")
    for step in range(1, 7):
        x = ids[(step - 1) * 256: step * 256 + 1]
        inputs, targets = x[:-1].view(4, 64), x[1:].view(4, 64)
        if recorder.wants(step):
            recorder.begin(model, step)
        logits, loss = model(inputs, targets)
        loss.backward()
        recorder.end(step)
        optimizer.step()
        optimizer.zero_grad()
    assert [p.name for p in recorder.written] == ["step_000002", "step_000004", "step_000006"]


def test_the_runs_hold_what_each_model_is(foreign_runs):
    attnres, llama = open_run(foreign_runs / "attnres"), open_run(foreign_runs / "llama")
    assert attnres.complete and llama.complete and attnres.n_tokens == llama.n_tokens == 2048
    assert attnres.source_labels[-1] == ["emb", "block1", "block2", "block3", "partial"]
    a = attnres.alpha[:].astype(np.float64)
    assert np.allclose(np.nansum(a, -1), 1.0, atol=5e-3) and np.nanstd(a[:, -1, 0]) > 0.01
    assert "alpha" not in llama.captured and {"input_rms", "output_rms", "grad_rms"} <= set(llama.captured)
    # the same corpus, split and tokenizer: the same tokens, shown as the tokenizer's subwords
    assert (attnres.token[:] == llama.token[:]).all() and attnres.vocabulary == llama.vocabulary
    assert attnres.text(0, 200) == llama.text(0, 200) and attnres.token[:].max() >= 256


def test_analyze_each_against_the_other(foreign_runs, tmp_path):
    for run, base in [("attnres", "llama"), ("llama", "attnres")]:
        out = tmp_path / run
        assert main(["analyze", str(foreign_runs / run), "--vs", str(foreign_runs / base), "--out", str(out),
                     "--resamples", "50"]) == 0
        summary = (out / "summary.md").read_text()
        assert "AttnResTransformer" in summary and "LlamaForCausalLM" in summary
        growth = pd.read_parquet(out / "signal_vs_baseline.parquet")
        assert len(growth) > 0 and np.isfinite(growth.select_dtypes("number").to_numpy(dtype=float)).any()
        estimates = pd.read_parquet(out / "estimates.parquet")
        assert {"input_rms_last_first", "grad_rms_cv"} <= set(estimates["statistic"])
    sources = pd.read_parquet(tmp_path / "attnres" / "routing_sources.parquet")
    assert {"block1", "partial", "emb"} <= set(sources["source_label"])
    assert len(pd.read_parquet(tmp_path / "attnres" / "routing.parquet")) == 8


def test_export_shows_subword_tokens(foreign_runs, tmp_path):
    run = open_run(foreign_runs / "attnres")
    out = tmp_path / "figs"
    assert main(["export", str(foreign_runs / "attnres"), "--baseline", str(foreign_runs / "llama"),
                 "--figures", "routing,signal,gradients,tokens,token_routing,jumps,compare", "--param", "token=5",
                 "--param", "other=llama", "--format", "svg", "--out", str(out)]) == 0
    for name in ("routing", "signal", "gradients", "tokens", "token_routing", "jumps", "compare"):
        assert "<svg" in (out / f"{name}.svg").read_text()
    words = {run.token_label(t) for t in run.token[:100] if t >= 256 and run.token_label(t).strip().isalpha()}
    tokens_svg = (out / "tokens.svg").read_text()
    assert words and any(w.strip() in tokens_svg for w in words)


def _pages(token_label: str):
    ok_routing = "#routing-graph .main-svg"
    return [
        ("/", "#runs-table", "LlamaForCausalLM"),
        ("/routing?run=attnres", "#routing-graph .heatmaplayer", "block1"),
        ("/routing?run=llama", ok_routing, None),
        ("/tokens?run=attnres&token=5", "#tokens-text .main-svg", token_label),
        ("/tokens?run=llama&token=5&stat=input_rms", "#tokens-text .main-svg", None),
        ("/tokens?run=llama&token=5", "#tokens-text .main-svg", None),
        ("/signal?run=attnres&baseline=llama", "#signal-graph .scatterlayer", None),
        ("/signal?run=llama&baseline=attnres", "#signal-graph .scatterlayer", None),
        ("/gradients?run=attnres&baseline=llama", "#gradients-graph .scatterlayer", None),
        ("/gradients?run=llama&baseline=attnres", "#gradients-graph .scatterlayer", None),
        ("/statistics?run=attnres", "#statistics-sublayers", None),
        ("/statistics?run=llama", "#statistics-msg", None),
        ("/compare?run=attnres&other=llama", "#compare-diff .main-svg", None),
        ("/compare?run=attnres&other=attnres-training/step_000006", "#compare-diff .heatmaplayer", None),
        ("/evolution?training=attnres-training", "#evolution-routing .heatmaplayer", "step"),
    ]


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs the Debian chromium and chromedriver")
def test_every_page_opens_on_foreign_runs(dash_duo, foreign_runs, free_port):
    from depthscope.dashboard.app import create_app

    run = open_run(foreign_runs / "attnres")
    subword = next(run.token_label(t) for t in run.token[:64] if t >= 256 and run.token_label(t).strip().isalpha())
    app = create_app(foreign_runs, background=False)
    dash_duo.start_server(app, port=free_port, debug=True, use_reloader=False, dev_tools_hot_reload=False)
    for path, selector, text in _pages(subword.strip()):
        dash_duo.driver.get(dash_duo.server_url + path)
        dash_duo.wait_for_element(selector, timeout=60)
        body = ""
        for _ in range(240):  # every figure drawn: no placeholder left
            body = dash_duo.find_element("body").text
            if "Loading…" not in body and "Computing…" not in body:
                break
            time.sleep(0.25)
        assert "Loading…" not in body and "Computing…" not in body, path
        assert "Could not draw" not in body, f"{path}: {body[:500]}"
        assert not dash_duo.driver.find_elements("css selector", ".panel-error"), path
        assert not dash_duo.driver.find_elements("css selector", ".dash-fe-error__title, .dash-debug-alert"), path
        if text:
            dash_duo.wait_for_contains_text(selector.split()[0], text, timeout=30)
        logs = [e for e in (dash_duo.get_logs() or []) if "favicon" not in str(e)]
        assert logs == [], f"{path}: {logs}"
