"""`depthscope reproduce` end to end at a tiny budget, the report's loss table, and the bundled demo."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from depthscope.models.config import ModelConfig
from depthscope.models.trainer import TrainConfig
from depthscope.probe import open_run
from depthscope.reproduce import RECALL_NAME, ReproduceConfig, loss_table, reproduce

REPO = Path(__file__).resolve().parents[2]


def test_loss_table_pairs_seeds_against_the_baseline():
    losses = pd.DataFrame([
        dict(mixer="residual", seed=0, final_heldout_loss=2.0, tokens_per_s=10.0),
        dict(mixer="residual", seed=1, final_heldout_loss=2.2, tokens_per_s=10.0),
        dict(mixer="residual", seed=2, final_heldout_loss=2.4, tokens_per_s=10.0),
        dict(mixer="block_attnres", seed=0, final_heldout_loss=1.9, tokens_per_s=8.0),
        dict(mixer="block_attnres", seed=1, final_heldout_loss=2.1, tokens_per_s=8.0),
        dict(mixer="block_attnres", seed=2, final_heldout_loss=2.3, tokens_per_s=8.0),
    ])
    table = loss_table(losses).set_index("mixer")
    assert table.loc["residual", "loss"] == pytest.approx(2.2)
    assert table.loc["residual", "loss_low"] < 2.2 < table.loc["residual", "loss_high"]
    # Every seed is exactly 0.1 better: the paired difference has zero spread, so its interval collapses.
    assert table.loc["block_attnres", "vs_baseline"] == pytest.approx(-0.1)
    assert table.loc["block_attnres", "vs_baseline_low"] == pytest.approx(-0.1)
    assert table.loc["block_attnres", "vs_baseline_high"] == pytest.approx(-0.1)


def test_reproduce_tiny_budget_end_to_end(tmp_path):
    cfg = ReproduceConfig(out=tmp_path / "bundle", budget_tokens=8 * 32 * 6, seeds=(0, 1),
                          model=ModelConfig(n_layers=1, d_model=16, n_heads=2, n_blocks=2),
                          train=TrainConfig(seq_len=32, batch_size=8), record_tokens=128,
                          recall_budget_tokens=8 * 32 * 3, evolution_checkpoints=2, progress=False)
    report = reproduce(cfg)
    text = report.read_text()
    losses = pd.read_csv(cfg.out / "losses.csv")
    assert sorted(losses.mixer.unique()) == sorted(cfg.mixers) and sorted(losses.seed.unique()) == [0, 1]
    assert (losses.steps == 6).all() and (losses.final_heldout_loss < losses.first_heldout_loss).all()
    runs = {p.name for p in (cfg.out / "runs").iterdir()}
    assert set(cfg.mixers) | {RECALL_NAME} <= runs
    assert len([r for r in runs if r.startswith("block_attnres_step_")]) >= 2  # the Evolution page's steps
    for name in runs:
        run = open_run(cfg.out / "runs" / name)
        assert run.complete and run.n_tokens >= 128 and "grad_rms" in run.captured
        assert run.checkpoint is not None and (run.checkpoint / "model.safetensors").exists()
    # Every figure the report links exists and is a real SVG.
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        svg = (cfg.out / link).read_text()
        assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert "| residual | 2 |" in text and "block_attnres against the residual baseline" in text
    # A second call resumes: nothing is retrained.
    stamp = (cfg.out / "checkpoints" / "residual" / "model.safetensors").stat().st_mtime_ns
    reproduce(cfg)
    assert (cfg.out / "checkpoints" / "residual" / "model.safetensors").stat().st_mtime_ns == stamp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bundled_demo_runs_open_and_serve():
    """The bundle in the repository is complete and readable, and `depthscope demo` serves it."""
    runs_dir = REPO / "assets" / "demo" / "runs"
    assert runs_dir.is_dir(), "the demo bundle (assets/demo) must ship in the repository"
    names = sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
    for required in ("residual", "full_attnres", "block_attnres", "denseformer", "mhc", RECALL_NAME):
        assert required in names
    for name in names:
        run = open_run(runs_dir / name).validate()
        assert run.complete and run.n_tokens > 0
        assert json.loads((runs_dir / name / "manifest.json").read_text())["status"] == "complete"
    port = _free_port()
    exe = Path(sys.executable).with_name("depthscope")
    proc = subprocess.Popen([str(exe), "demo", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, body = time.time() + 60, ""
        while time.time() < deadline and not body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert "depthscope" in body.lower(), "the demo dashboard did not answer within 60 s"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
