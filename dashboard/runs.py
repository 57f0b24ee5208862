"""The runs folder: list the runs in it, resolve a run id safely, and cache opened runs and their aggregates.

A run id is the run directory's path relative to the runs folder, with "/" separators (e.g. "block8" or
"sweep/block8/step_000100"). `resolve()` accepts only ids made of plain path components that stay inside the
folder once symlinks are resolved; anything else is NotFound (and nothing outside the folder is read).
Opened runs and their aggregates are cached keyed by (run id, modification stamp), so a run that is still
being written (or rewritten) is reopened when it changes. Every per-run problem is captured as text for the
Runs page; nothing here writes into a run.
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from depthscope.models import BASELINE, kind_of_model
from depthscope.probe import Run, RunError, open_run

from .data import RunData, SummaryData

MANIFEST = "manifest.json"
MAX_DEPTH = 4  # how deep below the runs folder run directories are looked for
_COMPONENT = re.compile(r"^[A-Za-z0-9_.+=@-][A-Za-z0-9_.+=@ -]*$")
STEP_DIR = re.compile(r"^(?:step|ckpt|checkpoint)[_-]?(\d+)$")


class NotFound(LookupError):
    """Unknown run id, or one that would leave the runs folder."""


class Pending(Exception):
    """A large run's aggregates or analysis are still being computed in the background."""

    def __init__(self, run_id: str, what: str, progress: float | None = None):
        self.run_id, self.what, self.progress = run_id, what, progress
        pct = "" if progress is None else f" ({progress:.0%})"
        super().__init__(f"{run_id}: computing {what}{pct}; this view refreshes when it is ready")


class _Job:
    def __init__(self, fn):
        self.fn = fn
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None

    def __call__(self):
        try:
            self.value = self.fn()
        except BaseException as err:  # kept and re-raised in the caller's thread
            self.error = err
        finally:
            self.done.set()


@dataclass
class RunInfo:
    """One row of the Runs page."""

    id: str
    path: Path
    kind: str = "?"
    status: str = "?"
    mode: str = ""
    tokens: int = 0
    sublayers: int = 0
    config: str = ""
    created: str = ""
    corpus: str = ""
    error: str | None = None
    training: str = ""  # the training a step checkpoint belongs to (checkpoint path without step_N)
    step: int | None = None
    intermediate: bool = False  # recorded from a step_N checkpoint saved along a training
    mixer: str = ""
    shape: tuple = ()  # (n_layers, d_model, n_heads): runs of one shape compare sublayer for sublayer
    captured: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _stamp(path: Path) -> tuple:
    """Changes whenever the run is (re)written: manifest and shard descriptions' mtimes and sizes."""
    parts = []
    for p in [path / MANIFEST, *sorted(path.glob("shard-*/shard.json"))]:
        try:
            st = p.stat()
            parts.append((p.name, st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append((p.name, None, None))
    return tuple(parts)


def training_of(manifest: dict) -> tuple[str, int | None]:
    """(training key, step) of a run recorded from a checkpoint (step checkpoints DIR/step_N share key DIR), or
    written during training by a callback (the manifest's training key and step)."""
    checkpoint = str(manifest.get("checkpoint") or "")
    step = None
    training = manifest.get("training") or {}
    if not checkpoint and training.get("key") and isinstance(training.get("step"), int):
        return str(training["key"]), int(training["step"])  # written during training (probe.training)
    if checkpoint:
        p = Path(checkpoint)
        m = STEP_DIR.match(p.name)
        if m:
            return str(p.parent), int(m.group(1))
        if isinstance(training.get("steps"), int):
            step = int(training["steps"])
        return str(p), step
    return "", step


class Catalogue:
    """The runs under `root`, opened lazily and cached. Thread-safe (Dash serves callbacks on threads)."""

    def __init__(self, root: str | Path, *, background: bool = True, max_open: int = 16, ablation=None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"runs folder {root}: not a directory")
        # ablation(run) -> the per-source ablation table; it loads the run's checkpoint, so the command line
        # hands it in (depthscope.causal_check.source_ablation); None: the ablation view says it is not at hand
        self.ablation = ablation
        self.background = background
        self.max_open = max_open
        self._lock = threading.RLock()
        self._runs: OrderedDict[str, tuple[tuple, Run | Exception, object | None]] = OrderedDict()
        self._jobs: OrderedDict[tuple, _Job] = OrderedDict()

    # ------------------------------------------------------------------------------------------- ids

    def resolve(self, run_id: str | None) -> Path:
        """The directory of run `run_id`, strictly inside the runs folder; NotFound otherwise."""
        if not run_id or not isinstance(run_id, str) or len(run_id) > 400 or "\x00" in run_id:
            raise NotFound(f"run not found: {run_id!r}")
        parts = run_id.split("/")
        if any(p in ("", ".", "..") or not _COMPONENT.match(p) for p in parts):
            raise NotFound(f"run not found: {run_id!r}")
        candidate = self.root.joinpath(*parts)
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"run not found: {run_id!r}") from None
        if real != self.root and self.root not in real.parents:
            raise NotFound(f"run not found: {run_id!r}")
        # no component may be a symlink, even one pointing back inside (ids must be canonical)
        probe = self.root
        for p in parts:
            probe = probe / p
            if probe.is_symlink():
                raise NotFound(f"run not found: {run_id!r}")
        if not real.is_dir() or not (real / MANIFEST).is_file():
            raise NotFound(f"run not found: {run_id!r}")
        return real

    def ids(self) -> list[str]:
        """Run ids: directories holding manifest.json, up to MAX_DEPTH below the folder (no symlinks followed)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel = Path(dirpath).relative_to(self.root)
            depth = len(rel.parts)
            if MANIFEST in filenames and depth > 0:
                found.append("/".join(rel.parts))
                dirnames[:] = [d for d in dirnames if not d.startswith("shard-") and d != "summary"]
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not Path(dirpath, d).is_symlink())
            if depth >= MAX_DEPTH:
                dirnames[:] = []
        return sorted(found)

    # ------------------------------------------------------------------------------------------- runs

    def _entry(self, run_id: str):
        path = self.resolve(run_id)
        stamp = _stamp(path)
        with self._lock:
            cached = self._runs.get(run_id)
            if cached is not None and cached[0] == stamp:
                self._runs.move_to_end(run_id)
                return cached
            try:
                run: Run | Exception = open_run(path)
            except RunError as err:
                run = err
            except Exception as err:  # anything unexpected is still only this run's problem
                run = RunError(path, f"{type(err).__name__}: {err}")
            entry = (stamp, run, None)
            self._runs[run_id] = entry
            while len(self._runs) > self.max_open:
                self._runs.popitem(last=False)
            return entry

    def open(self, run_id: str) -> Run:
        """The opened run; NotFound for a bad id, RunError for a broken run."""
        _, run, _ = self._entry(run_id)
        if isinstance(run, Exception):
            raise run
        return run

    def data(self, run_id: str, wait: float | None = None) -> RunData | SummaryData:
        """Serving aggregates of a run. Large runs are aggregated in a background thread: with `wait` set,
        this returns after at most `wait` seconds and the caller checks `.ready` / `.progress`."""
        stamp, run, data = self._entry(run_id)
        if isinstance(run, Exception):
            raise run
        with self._lock:
            stamp2, run2, data = self._runs.get(run_id, (stamp, run, None))
            if data is None:
                data = SummaryData(run) if run.mode == "summary" else RunData(run)
                self._runs[run_id] = (stamp, run, data)
                if isinstance(data, RunData):
                    if self.background and wait is not None:
                        threading.Thread(target=data.build, name=f"aggregate {run_id}", daemon=True).start()
        if isinstance(data, RunData) and not data.ready.is_set():
            if wait is None:
                data.build()
            else:
                data.ready.wait(wait)
        return data

    def ready_data(self, run_id: str, wait: float = 0.25) -> RunData | SummaryData:
        """Like data(), but raises Pending (with progress) while a background aggregation is still running,
        and RunError when it failed."""
        data = self.data(run_id, wait=wait if self.background else None)
        if not data.ready.is_set():
            raise Pending(run_id, "the run's aggregates", data.progress)
        if data.error:
            raise RunError(data.run.path, data.error)
        return data

    def analysis(self, run_id: str, key: tuple, fn, wait: float = 0.25):
        """fn() (an analysis of the run) cached per (run, modification stamp, key); computed in a background
        thread when the catalogue is in background mode (Pending while it runs)."""
        path = self.resolve(run_id)
        full = (run_id, _stamp(path), key)
        with self._lock:
            job = self._jobs.get(full)
            start = job is None
            if start:
                job = _Job(fn)
                self._jobs[full] = job
                while len(self._jobs) > 64:
                    self._jobs.popitem(last=False)
        if start:
            if self.background:
                threading.Thread(target=job, name=f"analysis {run_id} {key}", daemon=True).start()
            else:
                job()
        if not job.done.wait(wait if self.background else None):
            raise Pending(run_id, str(key[0]) if key else "an analysis")
        if job.error is not None:
            raise job.error
        return job.value

    def info(self, run_id: str) -> RunInfo:
        path = self.resolve(run_id)
        info = RunInfo(id=run_id, path=path)
        try:
            run = self.open(run_id)
        except RunError as err:
            info.status = "error"
            info.error = str(err)
            try:  # what the manifest still tells, if it parses
                import json

                manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
                info.kind = str((manifest.get("model") or {}).get("kind", "?"))
                info.created = str(manifest.get("created") or "")
            except Exception:
                pass
            return info
        m = run.manifest
        cfg = (run.model or {}).get("config") or {}
        info.kind = str((run.model or {}).get("kind", "?"))
        if "n_blocks" in run.mixer_kind.options:
            info.kind += f" (N={cfg.get('n_blocks')})"
        if cfg.get("mhc"):
            info.kind += " (mHC)"
        info.status = run.status
        info.mode = run.mode
        info.tokens = run.n_tokens
        if run.mode == "summary":
            try:
                info.tokens = int(run.summary["info"]["tokens"].iloc[0])
            except Exception:
                info.tokens = 0
        info.sublayers = len(run.sublayers)
        info.config = ", ".join(f"{k}={cfg[k]}" for k in ("n_layers", "d_model", "n_heads") if k in cfg)
        info.created = str(m.get("created") or "")
        info.corpus = str(m.get("corpus") or "")
        info.training, info.step = training_of(m)
        info.intermediate = bool(STEP_DIR.match(Path(str(m.get("checkpoint") or "")).name))
        info.mixer = str(cfg.get("mixer") or "")
        info.shape = tuple(cfg.get(k) for k in ("n_layers", "d_model", "n_heads"))
        info.captured = list(run.captured)
        return info

    def list(self) -> list[RunInfo]:
        """Every run in the folder (broken ones with their error)."""
        out = []
        for run_id in self.ids():
            try:
                out.append(self.info(run_id))
            except NotFound:
                continue
        return out

    def suggest_baseline(self, run_id: str | None, infos: list[RunInfo] | None = None) -> str | None:
        """The baseline a run is best compared with: a residual-mixer run of the same shape (n_layers, d_model,
        n_heads), preferably on the same corpus and not an intermediate checkpoint; None when there is none."""
        infos = [i for i in (infos if infos is not None else self.list()) if i.ok]
        run = next((i for i in infos if i.id == run_id), None)
        if run is None:
            return None
        candidates = [i for i in infos if kind_of_model({"kind": i.mixer}).family == BASELINE and i.shape == run.shape and i.id != run.id]
        if not candidates:
            return None
        return min(candidates, key=lambda i: (i.corpus != run.corpus, i.intermediate, -i.tokens, i.id)).id

    def suggest_run(self, infos: list[RunInfo] | None = None) -> str | None:
        """The run a first visit opens on: Block AttnRes (else Full AttnRes, else any routed run) that has a
        matching residual baseline, from a finished training rather than an intermediate checkpoint."""
        infos = [i for i in (infos if infos is not None else self.list()) if i.ok]
        if not infos:
            return None
        return min(infos, key=lambda i: (self.suggest_baseline(i.id, infos) is None, kind_of_model({"kind": i.mixer}).rank,
                                         i.intermediate, -i.tokens, i.id)).id

    def trainings(self) -> dict[str, list[RunInfo]]:
        """Runs grouped by the training they come from (only groups with at least two steps), by step."""
        groups: dict[str, list[RunInfo]] = {}
        for info in self.list():
            if info.ok and info.training and info.step is not None:
                groups.setdefault(info.training, []).append(info)
        return {k: sorted(v, key=lambda i: i.step) for k, v in groups.items() if len({i.step for i in v}) > 1}
