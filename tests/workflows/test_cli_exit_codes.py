"""Exit codes scripts can trust: `analyze`, `export` and `record` fail (non-zero, the file named on stderr) when
part of their job was lost to unreadable data, unless --allow-partial asks for the partial result; sections that
do not apply to a run's kind are not failures. Real files on disk: a demo run copied and one chunk damaged."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


def depthscope(*args: str) -> subprocess.CompletedProcess:
    """The installed command in a fresh process, as a pipeline runs it."""
    return subprocess.run([sys.executable, "-m", "depthscope.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def alpha_chunk(run: Path) -> Path:
    (chunk,) = [p for p in (run / "shard-00000" / "alpha" / "c").rglob("*") if p.is_file()]
    return chunk


@pytest.fixture(params=["truncated", "garbage"])
def damaged_run(request, tmp_path) -> Path:
    """The demo's Block AttnRes run in tmp_path/runs with its alpha chunk cut in half or overwritten with bytes
    that are not a chunk (same size)."""
    run = tmp_path / "runs" / "block_attnres"
    shutil.copytree(DEMO / "runs" / "block_attnres", run)
    chunk = alpha_chunk(run)
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2] if request.param == "truncated" else bytes(range(256)) * (len(data) // 256))
    return run


def test_analyze_fails_on_a_damaged_chunk_unless_partial_is_asked(damaged_run, tmp_path):
    chunk = alpha_chunk(damaged_run)
    done = depthscope("analyze", damaged_run, "--no-causal", "--resamples", "20", "--out", tmp_path / "a")
    assert done.returncode == 1
    assert str(chunk) in done.stderr and "routing" in done.stderr
    partial = depthscope("analyze", damaged_run, "--no-causal", "--resamples", "20", "--out", tmp_path / "b",
                         "--allow-partial")
    assert partial.returncode == 0 and str(chunk) in partial.stderr
    summary = (tmp_path / "b" / "summary.md").read_text()
    assert "routing: skipped" in summary and (tmp_path / "b" / "signal.csv").exists()  # what could be done


def test_analyze_a_section_that_does_not_apply_is_not_a_failure(tmp_path):
    """mHC runs record no mixing matrix and have no causal check: notes in summary.md, exit 0."""
    run = tmp_path / "runs" / "mhc"
    shutil.copytree(DEMO / "runs" / "mhc", run)
    done = depthscope("analyze", run, "--resamples", "20", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "mixing matrix: hyper runs do not record" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize("damaged_run", ["truncated"], indirect=True)
def test_export_fails_on_a_damaged_chunk_unless_partial_is_asked(damaged_run, tmp_path):
    chunk = alpha_chunk(damaged_run)
    done = depthscope("export", damaged_run, "--figures", "routing,grad_steps", "--out", tmp_path / "a")
    assert done.returncode == 1 and str(chunk) in done.stderr
    partial = depthscope("export", damaged_run, "--figures", "routing,grad_steps", "--out", tmp_path / "b",
                         "--allow-partial")
    assert partial.returncode == 0 and str(chunk) in partial.stderr
    assert (tmp_path / "b" / "grad_steps.svg").exists() and not (tmp_path / "b" / "routing.svg").exists()


def test_record_fails_when_the_split_runs_out_unless_partial_is_asked(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog." * 4
                                  for i in range(60)))  # a few held-out windows only
    args = ["record", "--checkpoint", DEMO / "checkpoints" / "residual", "--corpus", corpus, "--tokens", "1000000",
            "--no-progress"]
    done = depthscope(*args, "--out", tmp_path / "a")
    assert done.returncode == 1 and "ran out" in done.stderr and "--allow-partial" in done.stderr
    partial = depthscope(*args, "--out", tmp_path / "b", "--allow-partial")
    assert partial.returncode == 0 and "ran out" in partial.stderr
    assert (tmp_path / "b" / "manifest.json").exists()


def test_help_documents_exit_codes():
    for command in ("analyze", "export", "record"):
        text = depthscope(command, "--help").stdout
        assert "exit status: 0" in text and "--allow-partial" in text, command
