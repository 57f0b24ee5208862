"""What a probe records and where each value goes: the tap specs of a model and the run layout they imply.

The layout is the static description shared by the probe, the run writer, the summaries and the reader (it is
stored in manifest.json). Everything per sublayer is laid out on one **sublayer axis**: position i holds the
1-based sublayer `sublayers[i]`; for a full model that is 1..L, then L + 1 (the final mixer feeding the LM head)
where the model has one. Depth-attention weights are padded to `max_sources` along the source axis; the sources
of position i are `source_labels[i]` (their count is `n_sources[i]`, the rest of the row is NaN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from depthscope.models import Tap, axis_label

from .errors import ProbeError

# Tap kinds the probe records, and the per-token quantity each one becomes.
RMS_QUANTITIES = {"input": "input_rms", "output": "output_rms", "residual": "residual_rms"}
CAPTURE_KINDS = ("alpha", "input", "output", "residual")
DEFAULT_CAPTURE = CAPTURE_KINDS

Extractor = Callable[[nn.Module, tuple, Any], torch.Tensor]


@dataclass(frozen=True, eq=False)
class TapSpec:
    """One hook point: `module`'s forward yields `what` for 1-based `sublayer`.

    extract(module, args, output) -> tensor (with_kwargs: extract(module, args, kwargs, output), for adapters);
    None means the module's output itself (depthscope taps).
    For "alpha" the tensor is [batch, tokens, sources] with `labels` naming the sources; otherwise it is
    [batch, tokens, d_model] and the probe keeps its RMS over d_model.
    """

    module: nn.Module
    name: str
    what: str
    sublayer: int
    labels: tuple[str, ...] = ()
    extract: Extractor | None = None
    with_kwargs: bool = False


@dataclass
class Layout:
    """The static shape of a recording; JSON-able through to_dict / from_dict (stored in manifest.json)."""

    sublayers: list[int]  # the sublayer axis: 1-based ids
    sublayer_labels: list[str]  # attn1, mlp1, ..., final
    source_labels: list[list[str]]  # per sublayer-axis position; [] where no weights are recorded
    quantities: list[str]  # per-token arrays over the sublayer axis: alpha, input_rms, output_rms, ...
    grads: bool = False  # grad_rms (per token) and grad norms (per step) recorded
    positions: tuple[int, int] | None = None  # [start, stop) of sequence positions recorded; None = all
    alpha_dtype: str = "float16"
    n_params: list[int] = field(default_factory=list)  # parameters attributed to each sublayer (grad norms)

    @property
    def n_slots(self) -> int:
        return len(self.sublayers)

    @property
    def n_sources(self) -> np.ndarray:
        """[sublayers] number of valid sources at each position of the sublayer axis."""
        return np.array([len(labels) for labels in self.source_labels], dtype=np.int64)

    @property
    def max_sources(self) -> int:
        return max([len(labels) for labels in self.source_labels] + [1])

    @property
    def valid(self) -> np.ndarray:
        """[sublayers, max_sources] bool: True where a source exists."""
        return np.arange(self.max_sources)[None, :] < self.n_sources[:, None]

    def slot(self, sublayer: int) -> int:
        return self.sublayers.index(sublayer)

    def to_dict(self) -> dict:
        return {
            "sublayers": list(self.sublayers),
            "sublayer_labels": list(self.sublayer_labels),
            "source_labels": [list(x) for x in self.source_labels],
            "n_sources": self.n_sources.tolist(),
            "max_sources": self.max_sources,
            "quantities": list(self.quantities),
            "grads": self.grads,
            "positions": None if self.positions is None else list(self.positions),
            "alpha_dtype": self.alpha_dtype,
            "n_params": list(self.n_params),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Layout":
        return cls(
            sublayers=[int(x) for x in data["sublayers"]],
            sublayer_labels=[str(x) for x in data["sublayer_labels"]],
            source_labels=[[str(s) for s in x] for x in data["source_labels"]],
            quantities=[str(x) for x in data["quantities"]],
            grads=bool(data.get("grads", False)),
            positions=None if data.get("positions") is None else tuple(int(x) for x in data["positions"]),
            alpha_dtype=str(data.get("alpha_dtype", "float16")),
            n_params=[int(x) for x in data.get("n_params", [])],
        )


def tap_specs(model: nn.Module) -> list[TapSpec]:
    """Every depthscope tap of `model` the probe can record, in forward order."""
    return [
        TapSpec(module, name, module.what, module.sublayer, module.labels)
        for name, module in model.named_modules()
        if isinstance(module, Tap) and module.what in CAPTURE_KINDS
    ]


def tap_parameter_groups(model: nn.Module, specs: Sequence[TapSpec]) -> dict[int, list[nn.Parameter]]:
    """Parameters of sublayer l = those of the smallest module enclosing its input and output taps.

    Shared mixer parameters (e.g. the stacked pseudo-queries) belong to no single sublayer and are left out.
    """
    names: dict[int, list[str]] = {}
    for spec in specs:
        if spec.what in ("input", "output"):
            names.setdefault(spec.sublayer, []).append(spec.name)
    modules = dict(model.named_modules())
    groups: dict[int, list[nn.Parameter]] = {}
    for sublayer, found in names.items():
        parts = [n.split(".") for n in found]
        common: list[str] = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        if len(found) > 1 and common:
            enclosing = modules[".".join(common)]
        elif len(found) == 1 and len(parts[0]) > 1:
            enclosing = modules[".".join(parts[0][:-1])]
        else:
            continue
        groups[sublayer] = [p for p in enclosing.parameters() if p.requires_grad]
    return groups


def build_layout(
    specs: Sequence[TapSpec],
    capture: Sequence[str],
    sublayers: Sequence[int] | None,
    grads: bool,
    positions: tuple[int, int] | None,
    alpha_dtype: torch.dtype,
    label: Callable[[int], str],
) -> tuple[Layout, list[TapSpec]]:
    """Select the specs to record and lay out the sublayer axis; returns (layout, selected specs)."""
    unknown = set(capture) - set(CAPTURE_KINDS)
    if unknown:
        raise ProbeError(f"cannot capture {sorted(unknown)}; expected some of {CAPTURE_KINDS}")
    kinds = set(capture) | ({"input"} if grads else set())
    wanted = None if sublayers is None else {int(s) for s in sublayers}
    if wanted is not None and specs:
        missing = wanted - {s.sublayer for s in specs}
        if missing:
            raise ProbeError(f"the model has no taps at sublayers {sorted(missing)}")
    chosen = [s for s in specs if s.what in kinds and (wanted is None or s.sublayer in wanted)]
    if not chosen:
        raise ProbeError(
            "nothing to record: the model has no depthscope taps (or adapter hooks) of the kinds "
            f"{sorted(kinds)}" + ("" if wanted is None else f" at sublayers {sorted(wanted)}")
        )
    seen: set[tuple[str, int]] = set()
    for spec in chosen:
        if (spec.what, spec.sublayer) in seen:
            raise ProbeError(f"two {spec.what!r} taps claim sublayer {spec.sublayer} (the second is {spec.name})")
        seen.add((spec.what, spec.sublayer))
    axis = sorted({s.sublayer for s in chosen})
    labels_by = {s.sublayer: list(s.labels) for s in chosen if s.what == "alpha"}
    quantities = []
    if any(s.what == "alpha" for s in chosen):
        quantities.append("alpha")
    for kind, quantity in RMS_QUANTITIES.items():
        if kind in capture and any(s.what == kind for s in chosen):
            quantities.append(quantity)
    if grads:
        quantities.append("grad_rms")
    if positions is not None:
        start, stop = int(positions[0]), int(positions[1])
        if not 0 <= start < stop:
            raise ProbeError(f"positions must be 0 <= start < stop, got {positions}")
        positions = (start, stop)
    layout = Layout(
        sublayers=axis,
        sublayer_labels=[label(l) for l in axis],
        source_labels=[labels_by.get(l, []) for l in axis],
        quantities=quantities,
        grads=grads,
        positions=positions,
        alpha_dtype=str(alpha_dtype).replace("torch.", ""),
    )
    return layout, chosen


def default_label(n_sublayers: int) -> Callable[[int], str]:
    """attn1, mlp1, ... for 1..L and 'final' for L + 1."""

    def label(index: int) -> str:
        return axis_label(index, n_sublayers)

    return label
