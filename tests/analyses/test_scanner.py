"""One scan of a run (analyses/scanner.py): every chunk decoded once, any number of reducers fed from that read,
the same results as each statistic on its own, the same on one worker thread or several, and a reducer whose
data is bad failing alone with the reader's error while the others finish."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from depthscope.analyses import (MemoryRun, MomentsReducer, Reducer, RoutingAccumulator, routing_stats, scan,
                                 scanner)
from depthscope.analyses.analysis import analyze
from depthscope.analyses.signal import signal_frame, signal_profile, signal_reducers
from depthscope.probe import RunError, RunWriter, open_run
from depthscope.probe.batch import BatchRecord
from depthscope.probe.layout import Layout, default_label

LABELS = [["emb"], ["emb", "attn1"], ["emb", "attn1", "mlp1"], ["emb", "attn1", "mlp1", "attn2"]]


def alpha_of(tokens: int, seed: int = 0) -> np.ndarray:
    """[tokens, 4, 4] softmax-like weights, NaN beyond each row's sources."""
    rng = np.random.default_rng(seed)
    a = np.full((tokens, 4, 4), np.nan)
    for i, row in enumerate(LABELS):
        a[:, i, : len(row)] = rng.dirichlet(np.full(len(row), 0.5), size=tokens)
    return a


def write(path, alpha, rms, chunk=32):
    """A stored run through the probe's own writer: alpha and input_rms / output_rms [tokens, 4]."""
    t, n, s = alpha.shape
    label = default_label(n)
    quantities = ["alpha", *rms]
    layout = Layout(sublayers=list(range(1, n + 1)), sublayer_labels=[label(l) for l in range(1, n + 1)],
                    source_labels=[list(x) for x in LABELS], quantities=quantities)
    writer = RunWriter(path, chunk_tokens=chunk, meta={"model": {"kind": "full_attnres", "config": None}})
    writer.begin(layout, {})
    writer.write(BatchRecord(layout=layout, step=0, token=torch.full((1, t), 65),
                             document=torch.as_tensor(np.arange(t) // 8).view(1, t),
                             position=torch.arange(t).view(1, t), loss=torch.ones(1, t),
                             alpha=torch.from_numpy(alpha).to(torch.float16).view(1, t, n, s),
                             **{q: torch.as_tensor(v, dtype=torch.float32).view(1, t, n) for q, v in rms.items()}))
    writer.close(True)
    return path


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(1)
    rms = {q: np.exp(rng.normal(size=(300, 4))) for q in ("input_rms", "output_rms")}
    return write(tmp_path / "run", alpha_of(300), rms)


class Counting(Reducer):
    """Counts the chunks and tokens it is fed, and on which threads."""

    def __init__(self, names):
        self.arrays = tuple(names)
        self.starts, self.tokens = [], 0

    def partial(self, chunk):
        assert all(chunk[n].shape[0] == len(chunk) for n in self.arrays)
        return chunk.start, len(chunk)

    def merge(self, part):
        self.starts.append(part[0])
        self.tokens += part[1]

    def result(self):
        return self.starts, self.tokens


def test_one_scan_decodes_each_chunk_once_and_feeds_every_reducer(stored, monkeypatch):
    run = open_run(stored)
    decoded = []
    for name, array in run.arrays.items():
        original = array.read_block

        def counted(number, *args, name=name, original=original, **kwargs):
            decoded.append((name, number))
            return original(number, *args, **kwargs)

        monkeypatch.setattr(array, "read_block", counted)
    reducers = {"routing": RoutingAccumulator.of_run(run), "count": Counting(["alpha", "input_rms"]),
                **signal_reducers(run)}
    results = scan(run, reducers, workers=3)
    chunks = len(run.alpha.blocks())
    assert sorted(decoded) == sorted((n, i) for n in ("alpha", "input_rms", "output_rms") for i in range(chunks))
    assert results["count"] == ([a for a, _ in run.alpha.blocks()], 300)  # merged in chunk order
    alone = routing_stats(stored)
    assert results["routing"].sublayers.equals(alone.sublayers) and results["routing"].sources.equals(alone.sources)
    profile = signal_frame(run, {q: results[q] for q in ("input_rms", "output_rms")})
    assert profile.equals(signal_profile(stored))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_do_not_change_a_number(stored, workers):
    run = open_run(stored)
    one = scan(run, {"r": RoutingAccumulator.of_run(run), "m": MomentsReducer("input_rms", 4)}, workers=1)
    many = scan(run, {"r": RoutingAccumulator.of_run(run), "m": MomentsReducer("input_rms", 4)}, workers=workers)
    assert one["r"].sublayers.equals(many["r"].sublayers)
    assert np.array_equal(one["m"].hist, many["m"].hist) and np.array_equal(one["m"].sum, many["m"].sum)


def test_a_bad_chunk_fails_only_the_reducers_that_read_it(tmp_path):
    alpha = alpha_of(300)
    alpha[250, 2, 1] = np.nan  # a valid source in the last chunks
    rng = np.random.default_rng(2)
    path = write(tmp_path / "nan", alpha, {"input_rms": np.exp(rng.normal(size=(300, 4)))})
    run = open_run(path)
    results = scan(run, {"routing": RoutingAccumulator.of_run(run), "rms": MomentsReducer("input_rms", 4)}, workers=2)
    with pytest.raises(RunError, match=r"alpha/c/7/0/0: NaN depth-attention weight .*token 250"):
        results["routing"]  # the reader's error, naming the chunk file (chunk 7 of 32 tokens holds token 250)
    assert results["rms"].count.sum() == 300 * 4  # the other reducer read every chunk
    analysis = analyze(path, causal=False)  # analyze: one scan, the routing sections skipped, signal kept
    assert "signal" in analysis.tables and "routing" not in analysis.tables
    assert any(note.startswith("routing: skipped") for note in analysis.notes) and analysis.failures


def test_a_reducer_needing_an_array_the_run_lacks_fails_with_a_clear_error():
    run = MemoryRun(alpha=alpha_of(40), source_labels=LABELS, kind="full_attnres")
    results = scan(run, {"rms": MomentsReducer("input_rms", 4), "count": Counting(["alpha"])}, chunk_tokens=16)
    assert results["count"] == ([0, 16, 32], 40)  # the generic road (in-memory run, any chunk size)
    with pytest.raises(ValueError, match="input_rms"):
        results["rms"]


def test_default_workers_leave_cores_to_torch(monkeypatch):
    monkeypatch.setattr(scanner, "cores", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert scanner.default_workers() == 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert scanner.default_workers() == 1
