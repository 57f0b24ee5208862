"""One recorded batch, and the sink protocol that consumes batches (memory, disk, summaries)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch

from .layout import Layout

# Per-token arrays in the order the run store writes them, with their on-disk dtype (alpha: layout.alpha_dtype).
TOKEN_FIELDS = ("token", "document", "position", "step", "loss")
TOKEN_DTYPES = {"token": np.int32, "document": np.int64, "position": np.int64, "step": np.int64, "loss": np.float32}
SUBLAYER_FIELDS = ("input_rms", "output_rms", "residual_rms", "grad_rms")


@dataclass
class BatchRecord:
    """What the probe saw in one forward (and backward) pass. Tensors may live on the model's device.

    Per token ([batch, tokens]; `tokens` counts the recorded positions only):
      token (int), document (int), position (int), loss (float32, NaN where not given), step (int)
    Per token and sublayer-axis position ([batch, tokens, sublayers], float32, NaN where no tap fired):
      input_rms, output_rms, residual_rms, grad_rms (RMS of dLoss/dh_l)
    alpha: [batch, tokens, sublayers, max_sources] in the layout's dtype, NaN beyond each row's sources.
    grad_norms: [sublayers] float32, the L2 norm of each sublayer's parameter gradients (None if no backward).
    """

    layout: Layout
    step: int
    token: torch.Tensor
    document: torch.Tensor
    position: torch.Tensor
    loss: torch.Tensor
    alpha: torch.Tensor | None = None
    input_rms: torch.Tensor | None = None
    output_rms: torch.Tensor | None = None
    residual_rms: torch.Tensor | None = None
    grad_rms: torch.Tensor | None = None
    grad_norms: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.token.shape)  # type: ignore[return-value]

    @property
    def n_tokens(self) -> int:
        return int(self.token.numel())

    def quantity(self, name: str) -> torch.Tensor | None:
        return getattr(self, name)

    def to(self, device: str | torch.device) -> "BatchRecord":
        if self.token.device == torch.device(device):
            return self
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return BatchRecord(**moved)

    def flat(self) -> dict[str, np.ndarray]:
        """Every per-token array as numpy, flattened over [batch, tokens] -> [tokens, ...] (row-major)."""
        out: dict[str, np.ndarray] = {}
        for name in TOKEN_FIELDS:
            if name == "step":
                out[name] = np.full(self.n_tokens, self.step, dtype=TOKEN_DTYPES[name])
                continue
            out[name] = getattr(self, name).reshape(-1).cpu().numpy().astype(TOKEN_DTYPES[name], copy=False)
        for name in ("alpha",) + SUBLAYER_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.reshape(-1, *value.shape[2:]).cpu().numpy()
        return out


class Sink(Protocol):
    """Consumes batch records: `begin` once, `write` per batch, `close(ok)` once (ok=False after an error)."""

    def begin(self, layout: Layout, meta: dict) -> None: ...

    def write(self, record: BatchRecord) -> None: ...

    def close(self, ok: bool) -> None: ...


class MemorySink:
    """Keeps every record (moved to `device`, CPU by default) in `records`."""

    def __init__(self, device: str | torch.device | None = "cpu"):
        self.device = device
        self.records: list[BatchRecord] = []
        self.layout: Layout | None = None

    def begin(self, layout: Layout, meta: dict) -> None:
        self.layout = layout

    def write(self, record: BatchRecord) -> None:
        self.records.append(record if self.device is None else record.to(self.device))

    def close(self, ok: bool) -> None:
        pass

    def arrays(self) -> dict[str, np.ndarray]:
        """All records concatenated over tokens: the same arrays a run on disk holds."""
        parts = [r.flat() for r in self.records]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
