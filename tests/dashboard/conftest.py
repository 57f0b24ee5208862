"""Dashboard tests: small real runs recorded by the probe from tiny models (session-scoped), and the settings
that let dash[testing]'s dash_duo drive the Debian Chromium headless, offline."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: use the chromedriver on PATH, no network

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _keep_library_threads_alive() -> None:
    """dash[testing] stops its threaded server by raising SystemExit in EVERY thread started after the server
    (KillerThread.kill). That includes library threads first started by a request: zarr's event loop and
    executors, kaleido's export server and its browser's watchers. Once they are killed every later call into
    them waits forever (seen as hung tests). Only the server's own threads may be stopped."""
    import threading

    from dash.testing import application_runners

    original = application_runners.KillerThread.kill
    if getattr(original, "_keeps_library_threads", False):
        return

    def kill(self):
        # Stop only the server's own threads: this one (it runs the server) and werkzeug's request handlers.
        library = [t.ident for t in threading.enumerate()
                   if t is not self and "process_request_thread" not in t.name]
        self._old_threads = list(self._old_threads) + library
        original(self)

    kill._keeps_library_threads = True
    application_runners.KillerThread.kill = kill


_keep_library_threads_alive()


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on now: dash_duo's default (8050) collides when two suites run on one machine."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pytest_setup_options():
    """Options for dash_duo's Chrome: the Debian Chromium, headless, sandbox off, no background network."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    if Path(CHROMIUM).exists():
        options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    return options


def _model(mixer: str, seed: int = 0, scale: float = 1.5):

    return tiny_model(mixer, seed, query_scale=scale, d_model=32, max_seq_len=64)


TEXT = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!\n"
        "def f(x):\n    return x * 2\n") * 8


def record(path: Path, mixer: str, seed: int = 0, batches: int = 4, chunk_tokens: int = 128,
           checkpoint: str | None = None, grads: bool = True) -> Path:
    """Record `batches` x 2 x 64 tokens of TEXT through a tiny model into the run directory `path`."""
    from depthscope.probe import Probe, RunWriter

    model = _model(mixer, seed)
    data = torch.tensor(list(TEXT.encode()), dtype=torch.long)
    meta = {"corpus": "test-text", "tokenizer": {"kind": "bytes-utf8"}}
    if checkpoint:
        meta["checkpoint"] = checkpoint
    writer = RunWriter(path, chunk_tokens=chunk_tokens, overwrite=True, meta=meta)
    with Probe(model, out=writer, grads=grads) as probe:
        for step in range(batches):
            x = torch.stack([data[(step * 2 + b) * 64:(step * 2 + b) * 64 + 64] for b in range(2)])  # [2, 64]
            logits = model(x)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(2, 63)
            loss = torch.cat([loss, torch.full((2, 1), float("nan"))], 1)
            if grads:
                loss[:, :-1].mean().backward()
            probe.commit(loss=loss.detach(), document=torch.full_like(x, step), step=step)
            model.zero_grad(set_to_none=True)
    return path


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder: full, block, residual; two step checkpoints of one training; a corrupt and an incomplete
    run; and a symlink leading outside the folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    record(root / "full", "full_attnres", seed=1)
    record(root / "block", "block_attnres", seed=2)
    record(root / "residual", "residual", seed=3)
    train = root / "train"
    for step, seed in ((0, 4), (100, 5)):
        record(train / f"step{step}", "full_attnres", seed=seed, batches=2,
               checkpoint=f"/ckpt/train/step_{step:06d}")
    broken = root / "broken"
    shutil.copytree(root / "block", broken)
    manifest = broken / "manifest.json"
    manifest.write_text(manifest.read_text()[:200])  # truncated JSON
    partial = root / "halfway"
    shutil.copytree(root / "full", partial)
    shard = json.loads((partial / "shard-00000" / "shard.json").read_text())
    shard["status"] = "incomplete"
    (partial / "shard-00000" / "shard.json").write_text(json.dumps(shard))
    data = json.loads((partial / "manifest.json").read_text())
    data["status"] = "incomplete"
    (partial / "manifest.json").write_text(json.dumps(data))
    outside = tmp_path_factory.mktemp("outside")
    record(outside / "secret", "full_attnres", seed=9, batches=1)
    (root / "escape").symlink_to(outside / "secret")
    return root


DEMO_RUNS = Path(__file__).resolve().parents[2] / "assets" / "demo" / "runs"


@pytest.fixture(scope="session")
def demo_catalogue():
    """The demo bundle's runs (trained long enough to have sinks, jumps and non-uniform routing): aggregates and
    analyses computed once per session (run-independent work such as Evolution's statistics over steps and
    Gradients' uniformity over checkpoints is cached here). Read only."""
    from depthscope.dashboard.runs import Catalogue

    return Catalogue(DEMO_RUNS, background=False)


@pytest.fixture(scope="session")
def catalogue(runs_dir):
    from depthscope.dashboard.runs import Catalogue

    return Catalogue(runs_dir, background=False)


def _tree_state(root: Path) -> dict:
    """(size, mtime) of every file under root: to check that nothing wrote into a run."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tree_state():
    return _tree_state
