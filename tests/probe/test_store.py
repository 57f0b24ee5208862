"""The run store: round trip, streaming memory bound, crash safety, and one clear error per bad file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import zarr

from depthscope.probe import SCHEMA_VERSION, Probe, RunError, RunWriter, open_run
from tiny_models import tiny_model  # tests/tiny_models.py: the one tiny model

torch.set_num_threads(1)


def tiny(mixer="block_attnres", seed=0):
    return tiny_model(mixer, seed)


def batches(n, batch=2, seq=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, seq), generator=g) for _ in range(n)]


def record(path, model, xs, chunk_tokens=16, grads=False, **kw):
    writer = RunWriter(path, chunk_tokens=chunk_tokens, meta={"seed": 5, "corpus": "test"}, **kw)
    with Probe(model, out=writer, memory=True, grads=grads) as probe:
        for step, x in enumerate(xs):
            logits = model(x)
            if grads:
                F.cross_entropy(logits.flatten(0, 1), x.flatten()).backward()
            probe.commit(targets=x, document=torch.full_like(x, step), step=step)
    return probe, writer


def test_round_trip_equals_the_in_memory_capture(tmp_path):
    model, xs = tiny(), batches(7)
    probe, _ = record(tmp_path / "run", model, xs, grads=True)
    run = open_run(tmp_path / "run")
    mem = probe.arrays()
    assert run.complete and run.status == "complete" and run.mode == "capture"
    assert run.n_tokens == 7 * 16 == len(run.alpha)
    assert run.manifest["seed"] == 5 and run.manifest["schema_version"] == SCHEMA_VERSION == 2
    assert run.manifest["model"]["kind"] == "block_attnres" and run.manifest["model"]["config"]["d_model"] == 16
    assert run.sublayers == [1, 2, 3, 4, 5] and run.sublayer_labels[-1] == "final"
    assert run.valid.tolist() == [[True, False, False], [True, True, False], [True, True, False],
                                  [True, True, True], [True, True, True]]
    for name in ("alpha", "input_rms", "output_rms", "grad_rms", "token", "document", "position", "step", "loss"):
        np.testing.assert_array_equal(run.arrays[name][:], mem[name], err_msg=name)
    assert run.alpha.dtype == np.float16 and run.alpha.shape == (112, 5, 3)
    np.testing.assert_array_equal(run.token[:], torch.cat([x.flatten() for x in xs]).numpy())
    assert run.document[16 * 3] == 3 and run.step[-1] == 6
    # indexing forms
    np.testing.assert_array_equal(run.alpha[5], mem["alpha"][5])
    np.testing.assert_array_equal(run.alpha[10:40:3, 2], mem["alpha"][10:40:3, 2])
    idx = np.array([100, 3, 50, 3])
    np.testing.assert_array_equal(run.input_rms[idx], mem["input_rms"][idx])
    np.testing.assert_array_equal(run.loss[-1], mem["loss"][-1])
    # streaming over chunks
    chunks = list(run.iter_chunks(["alpha", "token"], chunk_tokens=30))
    assert [len(c) for c in chunks] == [30, 30, 30, 22]
    np.testing.assert_array_equal(np.concatenate([c.token for c in chunks]), mem["token"])
    # the grad-norm table, readable with pandas alone
    table = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "run/shard-00000/grad_norms").glob("*.parquet")))
    assert len(table) == len(run.grad_norms) == 7 * 4
    assert list(run.grad_norms.columns) == ["step", "sublayer", "label", "grad_norm", "n_params", "rank"]
    assert run.text(0, 16) == bytes(xs[0].flatten().tolist()).decode("utf-8", errors="replace")
    assert run.tokens_frame(0, 3)["token"].tolist() == xs[0][0, :3].tolist()


def test_readable_with_zarr_alone(tmp_path):
    model, xs = tiny("full_attnres"), batches(3)
    record(tmp_path / "run", model, xs)
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    group = zarr.open_group(str(tmp_path / "run/shard-00000"), mode="r")
    alpha = group["alpha"][:]
    assert alpha.shape == (48, manifest["max_sources"] and 5, 5)
    valid = np.arange(5)[None, :] < np.array(manifest["n_sources"])[:, None]
    np.testing.assert_allclose(np.nansum(alpha.astype(np.float32), -1), 1.0, atol=3e-3)
    assert np.isnan(alpha[:, ~valid]).all() and np.isfinite(alpha[:, valid]).all()


def test_memory_stays_flat_with_many_tokens(tmp_path):
    """Peak traced memory over the last 60 batches of a recording is no higher than over the 60 before; a
    probe that kept the tokens would add their size. (numpy buffers and zarr are traced; tensors are not.)"""
    model, xs = tiny(), batches(160, batch=4, seq=16)
    writer = RunWriter(tmp_path / "run", chunk_tokens=512)
    peaks = {}
    with torch.no_grad():
        tracemalloc.start()
        with Probe(model, out=writer) as probe:
            for i, x in enumerate(xs):
                model(x)
                if i in (39, 99, 159):  # 40 batches of warm-up, then two stretches of 60
                    peaks[i] = tracemalloc.get_traced_memory()[1]
                    tracemalloc.reset_peak()
        tracemalloc.stop()
    assert writer.max_buffered <= 512  # never more than one chunk of rows buffered
    assert probe.memory is None
    run = open_run(tmp_path / "run")
    assert run.n_tokens == 160 * 64
    stretch = sum(np.dtype(a.dtype).itemsize * int(np.prod(a.shape)) for a in run.arrays.values()) * 60 / 160
    assert stretch > 300_000
    # zarr's own bookkeeping adds ~100 bytes per append; keeping the data would add 100 % of `stretch`
    assert peaks[159] < peaks[99] + 0.25 * stretch, (peaks, stretch)


def test_an_exception_leaves_an_incomplete_but_readable_run(tmp_path):
    model, xs = tiny(), batches(5)
    with pytest.raises(KeyboardInterrupt):
        with Probe(model, out=RunWriter(tmp_path / "run", chunk_tokens=16)) as probe:
            for i, x in enumerate(xs):
                model(x)
                probe.commit()
                if i == 2:
                    model(x)  # a batch in flight when the error strikes is dropped
                    raise KeyboardInterrupt
    run = open_run(tmp_path / "run")
    assert run.status == "incomplete" and not run.complete
    assert run.n_tokens == 3 * 16  # everything committed before the error was kept
    np.testing.assert_array_equal(run.token[:], torch.cat([x.flatten() for x in xs[:3]]).numpy())


KILL_SCRIPT = """
import sys, time, torch
from depthscope.models import DepthTransformer, ModelConfig
from depthscope.probe import Probe, RunWriter
torch.manual_seed(0)
torch.set_num_threads(1)
model = DepthTransformer(ModelConfig(mixer="full_attnres", n_layers=2, d_model=16, n_heads=2, max_seq_len=16))
g = torch.Generator().manual_seed(0)
with Probe(model, out=RunWriter(sys.argv[1], chunk_tokens=48)) as probe:
    with torch.no_grad():
        for step in range(100000):
            x = torch.randint(0, 256, (2, 8), generator=g)
            model(x)
            probe.commit(step=step)
            time.sleep(0.01)
"""


def test_a_recording_killed_half_way_is_readable_up_to_its_last_chunk(tmp_path):
    script = tmp_path / "record.py"
    script.write_text(KILL_SCRIPT)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if json.loads((run_dir / "shard-00000/shard.json").read_text())["tokens"] >= 4 * 48:
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            if proc.poll() is not None:
                pytest.fail(f"the recording died: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("the recording did not reach 4 chunks in time")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    run = open_run(run_dir)
    assert run.status == "incomplete"
    assert run.n_tokens >= 4 * 48 and run.n_tokens % 48 == 0
    g = torch.Generator().manual_seed(0)
    expected = torch.cat([torch.randint(0, 256, (2, 8), generator=g).flatten() for _ in range(run.n_tokens // 16)])
    np.testing.assert_array_equal(run.token[:], expected.numpy())
    alpha = run.alpha[:].astype(np.float32)  # every chunk up to the flushed count reads back whole
    np.testing.assert_allclose(np.nansum(alpha, -1), 1.0, atol=3e-3)
    assert run.step[-1] == run.n_tokens // 16 - 1


@pytest.fixture
def good_run(tmp_path):
    record(tmp_path / "run", tiny(), batches(4), chunk_tokens=16)
    return tmp_path / "run"


def test_truncated_chunk_names_the_file(good_run):
    chunk = good_run / "shard-00000/alpha/c/1/0/0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    run = open_run(good_run)
    run.alpha[:16]  # chunk 0 is fine
    with pytest.raises(RunError, match="truncated or corrupt chunk") as err:
        run.alpha[16:20]
    assert err.value.path == chunk
    with pytest.raises(RunError, match=str(chunk)):
        run.validate()


def test_wrong_schema_version_names_the_manifest(good_run):
    path = good_run / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="schema version 99") as err:
        open_run(good_run)
    assert err.value.path == path


def test_nan_weight_for_a_valid_source_names_the_chunk(good_run):
    array = zarr.open_array(str(good_run / "shard-00000/alpha"), mode="r+")
    block = array[16:32]
    block[3, 3, 1] = np.nan  # sublayer 4 has 3 valid sources
    array[16:32] = block
    run = open_run(good_run)
    run.alpha[:16]
    with pytest.raises(RunError, match="NaN depth-attention weight.*token 19 ") as err:
        run.alpha[:]
    assert err.value.path == good_run / "shard-00000/alpha/c/1/0/0"


def test_missing_files_name_the_file(good_run):
    (good_run / "shard-00000/loss/c/2").unlink()
    with pytest.raises(RunError, match="missing chunk 2") as err:
        open_run(good_run)
    assert err.value.path == good_run / "shard-00000/loss/c/2"
    (good_run / "manifest.json").unlink()
    with pytest.raises(RunError, match="manifest.json: missing"):
        open_run(good_run)
    with pytest.raises(RunError, match="no such run"):
        open_run(good_run / "nope")


def test_corrupt_manifest_and_schema_mismatch(good_run):
    path = good_run / "manifest.json"
    text = path.read_text()
    manifest = json.loads(text)
    manifest["arrays"]["alpha"]["tail"] = [5, 4]
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="schema mismatch") as err:
        open_run(good_run)
    assert err.value.path == good_run / "shard-00000/alpha/zarr.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RunError, match="corrupt or truncated JSON"):
        open_run(good_run)


def test_an_existing_run_is_not_overwritten_by_accident(good_run):
    before = open_run(good_run).n_tokens
    with pytest.raises(RunError, match="already exists"):
        record(good_run, tiny(), batches(1))
    assert open_run(good_run).n_tokens == before and open_run(good_run).complete
    record(good_run, tiny(), batches(1), overwrite=True)
    assert open_run(good_run).n_tokens == 16


def test_missing_arrays_are_a_clear_error(good_run):
    run = open_run(good_run)
    with pytest.raises(RunError, match="did not capture 'residual_rms'"):
        run.residual_rms
    assert run.summary is None
