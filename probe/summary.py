"""Mergeable running statistics: what summary mode keeps instead of per-token arrays.

Kept per sublayer-axis position (and per source for the weights), exactly mergeable across batches, processes
and ranks (Chan et al.'s pairwise update for means and variances; sums for counts; min and max):

  alpha        count, mean, variance of each weight alpha[l, s] over tokens (NaN entries are not counted)
  top_source   how many tokens had source s as their top (largest-weight) source at sublayer l
  jump         the same as a histogram of jump distance d = n_sources(l) - s (1 = the most recent source;
               for Full AttnRes the number of sublayers back, for Block AttnRes the number of sources back)
  norms        count, mean, variance, min, max of input_rms, output_rms, residual_rms, grad_rms per sublayer
  grad_norms   the same for the per-step parameter-gradient norm of each sublayer (one value per batch)
  loss         the same for the per-token loss (where it was given)

Variances are population variances (M2 / count). `update(record)` folds in one batch, `merge(other)` another
summary, `all_reduce(group)` every rank's summary (all ranks end with the global result).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .batch import SUBLAYER_FIELDS, BatchRecord
from .errors import ProbeError, RunError
from .layout import Layout

_F64 = torch.float64


class Moments:
    """count, mean, M2, min, max of values of some shape, accumulated over a leading sample axis."""

    def __init__(self, shape: tuple[int, ...]):
        self.count = torch.zeros(shape, dtype=_F64)
        self.mean = torch.zeros(shape, dtype=_F64)
        self.m2 = torch.zeros(shape, dtype=_F64)
        self.min = torch.full(shape, np.inf, dtype=_F64)
        self.max = torch.full(shape, -np.inf, dtype=_F64)

    @property
    def var(self) -> torch.Tensor:
        return torch.where(self.count > 0, self.m2 / self.count.clamp(min=1), torch.full_like(self.m2, np.nan))

    def update(self, x: torch.Tensor) -> None:
        """x: [samples, *shape]; NaN entries are skipped."""
        x = x.to(_F64)
        finite = torch.isfinite(x)
        count = finite.sum(0).to(_F64)
        zeroed = torch.where(finite, x, torch.zeros((), dtype=_F64, device=x.device))
        mean = zeroed.sum(0) / count.clamp(min=1)
        m2 = torch.where(finite, (x - mean) ** 2, torch.zeros((), dtype=_F64, device=x.device)).sum(0)
        low = torch.where(finite, x, torch.full((), np.inf, dtype=_F64, device=x.device)).amin(0)
        high = torch.where(finite, x, torch.full((), -np.inf, dtype=_F64, device=x.device)).amax(0)
        self._combine(count.cpu(), mean.cpu(), m2.cpu(), low.cpu(), high.cpu())

    def _combine(self, count, mean, m2, low, high) -> None:
        total = self.count + count
        safe = total.clamp(min=1)
        delta = mean - self.mean
        self.mean = torch.where(total > 0, self.mean + delta * count / safe, self.mean)
        self.m2 = torch.where(total > 0, self.m2 + m2 + delta**2 * self.count * count / safe, self.m2)
        self.count = total
        self.min = torch.minimum(self.min, low)
        self.max = torch.maximum(self.max, high)

    def merge(self, other: "Moments") -> None:
        self._combine(other.count, other.mean, other.m2, other.min, other.max)

    def all_reduce(self, group=None) -> None:
        import torch.distributed as dist

        count = self.count.clone()
        dist.all_reduce(count, group=group)
        total = self.count * self.mean
        dist.all_reduce(total, group=group)
        mean = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
        m2 = self.m2 + self.count * (self.mean - mean) ** 2
        dist.all_reduce(m2, group=group)
        low, high = self.min.clone(), self.max.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=group)
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=group)
        self.count, self.mean, self.m2, self.min, self.max = count, mean, m2, low, high


def _same_layout(a: Layout, b: Layout) -> bool:
    return (a.sublayers, a.source_labels, a.quantities) == (b.sublayers, b.source_labels, b.quantities)


class Summary:
    """Running statistics over recorded batches; a sink for Probe (begin / write / close)."""

    NORMS = SUBLAYER_FIELDS

    def __init__(self, layout: Layout | None = None):
        self.layout: Layout | None = None
        if layout is not None:
            self._allocate(layout)

    def _allocate(self, layout: Layout) -> None:
        n, s = layout.n_slots, layout.max_sources
        self.layout = layout
        self.tokens = 0
        self.batches = 0
        self.alpha = Moments((n, s))
        self.top_source = torch.zeros((n, s), dtype=_F64)
        self.norms = {q: Moments((n,)) for q in self.NORMS if q in layout.quantities}
        self.grad_norms = Moments((n,))
        self.loss = Moments((1,))
        self.reduced = False  # True right after all_reduce(): a RunWriter then does not reduce it again

    # ----------------------------------------------------------------------------------------- sink protocol

    def begin(self, layout: Layout, meta: dict) -> None:
        if self.layout is None:
            self._allocate(layout)
        elif not _same_layout(self.layout, layout):
            raise ProbeError("this Summary was made for another layout (other sublayers, sources or quantities)")

    def write(self, record: BatchRecord) -> None:
        self.update(record)

    def close(self, ok: bool) -> None:
        pass

    # ----------------------------------------------------------------------------------------- statistics

    def update(self, record: BatchRecord) -> "Summary":
        """Fold one batch record in."""
        if self.layout is None:
            self._allocate(record.layout)
        self.reduced = False
        with torch.no_grad():
            n_tokens = record.n_tokens
            self.tokens += n_tokens
            self.batches += 1
            if record.alpha is not None:
                alpha = record.alpha.reshape(n_tokens, *record.alpha.shape[2:]).float()  # [tokens, n, S]
                self.alpha.update(alpha)
                has = torch.isfinite(alpha).any(-1)  # [tokens, n]: the sublayer has weights for the token
                top = torch.nan_to_num(alpha, nan=-np.inf).argmax(-1)  # [tokens, n]
                n, s = alpha.shape[1:]
                index = (torch.arange(n, device=alpha.device) * s + top)[has]
                self.top_source += torch.bincount(index, minlength=n * s).view(n, s).to(_F64).cpu()
            for quantity, moments in self.norms.items():
                value = getattr(record, quantity)
                if value is not None:
                    moments.update(value.reshape(n_tokens, -1))
            if record.grad_norms is not None:
                self.grad_norms.update(record.grad_norms.reshape(1, -1))
            self.loss.update(record.loss.reshape(-1, 1))
        return self

    def merge(self, other: "Summary") -> "Summary":
        """Fold another summary (same layout) in; returns self."""
        if other.layout is None:
            return self
        if self.layout is None:
            self._allocate(other.layout)
        if not _same_layout(self.layout, other.layout):
            raise ProbeError("cannot merge summaries of different layouts")
        self.reduced = False
        self.tokens += other.tokens
        self.batches += other.batches
        self.alpha.merge(other.alpha)
        self.top_source = self.top_source + other.top_source
        for q, moments in self.norms.items():
            moments.merge(other.norms[q])
        self.grad_norms.merge(other.grad_norms)
        self.loss.merge(other.loss)
        return self

    def all_reduce(self, group=None) -> "Summary":
        """Combine the summaries of every rank of `group` (torch.distributed, any backend that handles CPU
        float64 tensors, e.g. gloo); every rank ends with the same global summary. Returns self."""
        import torch.distributed as dist

        if self.layout is None:
            raise ProbeError("all_reduce() on a summary that has seen no layout")
        counts = torch.tensor([self.tokens, self.batches], dtype=_F64)
        dist.all_reduce(counts, group=group)
        self.tokens, self.batches = int(counts[0]), int(counts[1])
        self.alpha.all_reduce(group)
        dist.all_reduce(self.top_source, group=group)
        for moments in self.norms.values():
            moments.all_reduce(group)
        self.grad_norms.all_reduce(group)
        self.loss.all_reduce(group)
        self.reduced = True
        return self

    # ----------------------------------------------------------------------------------------- tables

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """Tidy tables: alpha, top_source, jump, norms, grad_norms, loss, info (see the module docstring)."""
        if self.layout is None:
            raise ProbeError("an empty summary has no tables")
        lay = self.layout
        valid = lay.valid
        slot, src = np.nonzero(valid)
        sub = np.asarray(lay.sublayers)[slot]
        label = np.asarray(lay.sublayer_labels, dtype=object)[slot]
        source = np.array([lay.source_labels[i][j] for i, j in zip(slot, src)], dtype=object)
        frames: dict[str, pd.DataFrame] = {}
        frames["alpha"] = pd.DataFrame({
            "sublayer": sub, "label": label, "source_index": src, "source": source,
            "count": self.alpha.count.numpy()[slot, src].astype(np.int64),
            "mean": self.alpha.mean.numpy()[slot, src], "var": self.alpha.var.numpy()[slot, src],
            "min": self.alpha.min.numpy()[slot, src], "max": self.alpha.max.numpy()[slot, src],
        })
        top = self.top_source.numpy()[slot, src].astype(np.int64)
        frames["top_source"] = pd.DataFrame({
            "sublayer": sub, "label": label, "source_index": src, "source": source, "count": top,
        })
        frames["jump"] = pd.DataFrame({
            "sublayer": sub, "label": label, "distance": lay.n_sources[slot] - src, "count": top,
        }).sort_values(["sublayer", "distance"], kind="stable").reset_index(drop=True)
        rows = []
        for quantity, moments in self.norms.items():
            rows.append(self._moment_frame(moments, quantity))
        frames["norms"] = pd.concat(rows, ignore_index=True) if rows else self._moment_frame(Moments((0,)), "")
        frames["grad_norms"] = self._moment_frame(self.grad_norms, "grad_norm").drop(columns="quantity")
        loss = self.loss
        frames["loss"] = pd.DataFrame({
            "count": loss.count.numpy().astype(np.int64), "mean": loss.mean.numpy(), "var": loss.var.numpy(),
            "min": loss.min.numpy(), "max": loss.max.numpy(),
        })
        frames["info"] = pd.DataFrame({"tokens": [self.tokens], "batches": [self.batches]})
        return frames

    def _moment_frame(self, moments: Moments, quantity: str) -> pd.DataFrame:
        lay = self.layout
        size = moments.count.shape[0]
        return pd.DataFrame({
            "quantity": [quantity] * size,
            "sublayer": np.asarray(lay.sublayers[:size], dtype=np.int64),
            "label": list(lay.sublayer_labels[:size]),
            "count": moments.count.numpy().astype(np.int64),
            "mean": moments.mean.numpy(), "var": moments.var.numpy(),
            "min": moments.min.numpy(), "max": moments.max.numpy(),
        })

    # ----------------------------------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write every table as <name>.parquet and the layout as summary.json into `directory`."""
        from .store import atomic_write_json, atomic_write_parquet

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in self.to_frames().items():
            atomic_write_parquet(directory / f"{name}.parquet", frame)
        atomic_write_json(directory / "summary.json", {"layout": self.layout.to_dict(), "tokens": self.tokens,
                                                        "batches": self.batches})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Summary":
        """Read a saved summary back (exactly mergeable with others)."""
        directory = Path(directory)
        meta_path = directory / "summary.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            layout = Layout.from_dict(meta["layout"])
        except FileNotFoundError:
            raise RunError(meta_path, "missing") from None
        except (ValueError, KeyError, TypeError) as err:
            raise RunError(meta_path, f"corrupt summary description ({err})") from None
        summary = cls(layout)
        summary.tokens, summary.batches = int(meta["tokens"]), int(meta["batches"])
        frames = {}
        for name in ("alpha", "top_source", "norms", "grad_norms", "loss"):
            path = directory / f"{name}.parquet"
            try:
                frames[name] = pd.read_parquet(path)
            except FileNotFoundError:
                raise RunError(path, "missing") from None
            except Exception as err:
                raise RunError(path, f"unreadable Parquet table ({err})") from None
        slot_of = {l: i for i, l in enumerate(layout.sublayers)}
        a = frames["alpha"]
        i, j = a["sublayer"].map(slot_of).to_numpy(), a["source_index"].to_numpy()
        _fill(summary.alpha, (i, j), a)
        summary.top_source[torch.from_numpy(np.array(i, dtype=np.int64)), torch.from_numpy(np.array(j, dtype=np.int64))] = (
            _column(frames["top_source"], "count"))
        for quantity, moments in summary.norms.items():
            part = frames["norms"][frames["norms"]["quantity"] == quantity]
            _fill(moments, (part["sublayer"].map(slot_of).to_numpy(),), part)
        g = frames["grad_norms"]
        _fill(summary.grad_norms, (g["sublayer"].map(slot_of).to_numpy(),), g)
        _fill(summary.loss, (np.zeros(len(frames["loss"]), dtype=np.int64),), frames["loss"])
        return summary


def _column(frame: pd.DataFrame, name: str) -> torch.Tensor:
    return torch.from_numpy(frame[name].to_numpy(dtype=np.float64, copy=True))


def _fill(moments: Moments, index: tuple, frame: pd.DataFrame) -> None:
    index = tuple(torch.from_numpy(np.array(i, dtype=np.int64)) for i in index)
    count = _column(frame, "count")
    moments.count[index] = count
    moments.mean[index] = _column(frame, "mean")
    moments.m2[index] = torch.nan_to_num(_column(frame, "var")) * count
    moments.min[index] = _column(frame, "min")
    moments.max[index] = _column(frame, "max")
