"""RecordOptions: one statement of the recording options, serving record_run, record_model, record_foreign and
the `record` command (real checkpoint from the demo bundle, real runs on disk)."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest

from depthscope.cli import build_parser, main
from depthscope.probe import open_run
from depthscope.record import RecordOptions, record_model, record_run
from depthscope.record_foreign import record_foreign

CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "demo" / "checkpoints" / "block_attnres"


def test_one_list_of_options():
    names = {f.name for f in dataclasses.fields(RecordOptions)}
    for fn in (record_run, record_model, record_foreign):
        params = inspect.signature(fn).parameters
        assert "options" in params and not names & set(params), fn.__name__  # no keyword list of its own
    args = build_parser().parse_args(["record", "--checkpoint", "c", "--corpus", "pydoc", "--out", "o"])
    from depthscope.options import build

    assert build(RecordOptions, args) == RecordOptions()  # the command's defaults are the dataclass's
    with pytest.raises(ValueError, match="must be at least 1"):
        RecordOptions(tokens=0)


def test_options_and_keywords_record_the_same(tmp_path):
    a = record_run(CHECKPOINT, "pydoc", tmp_path / "a", RecordOptions(tokens=96, batch_size=2, seq_len=32,
                                                                      grads=True, progress=False))
    b = record_run(CHECKPOINT, "pydoc", tmp_path / "b", tokens=96, batch_size=2, seq_len=32, grads=True,
                   progress=False)
    assert (a.tokens, a.batches) == (b.tokens, b.batches) == (96, 2)
    ra, rb = open_run(a.path), open_run(b.path)
    assert ra.manifest["seq_len"] == 32 and ra.manifest["batch_size"] == 2
    for name in ("alpha", "grad_rms", "loss"):
        assert np.array_equal(getattr(ra, name)[:], getattr(rb, name)[:], equal_nan=True), name
    # options and keywords together: the keywords win
    c = record_run(CHECKPOINT, "pydoc", tmp_path / "c", RecordOptions(tokens=10_000, progress=False), tokens=32,
                   seq_len=32)
    assert c.tokens == 32


def test_the_command_refuses_bad_options_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["record", "--checkpoint", str(CHECKPOINT), "--corpus", "pydoc", "--tokens", "0",
              "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "--tokens, --batch-size, --seq-len and --chunk-tokens must be at least 1" in capsys.readouterr().err
