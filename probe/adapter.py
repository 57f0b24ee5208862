"""Probing a model written elsewhere: name its depth-mixing modules and say how to get their weights.

A model built from depthscope's taps needs no adapter. Any other model is probed by naming

- `mixers`: the modules that form each sublayer's input by mixing earlier sources (module name -> the 1-based
  sublayer whose input it forms; a list means sublayers 1, 2, ... in order), and
- `weights(module, args, output)`: a function that computes that module's depth-attention weights
  [batch, tokens, sources] from the module's positional inputs `args` (and/or its output), and optionally
- `sublayers`: the modules computing f_l from h_l (name -> 1-based sublayer): their first positional input is
  recorded as h_l (and its gradient), their output as f_l; their parameters give the per-sublayer grad norms;
- `sources`: labels of the sources of sublayer l (a mapping or a function of l). The default follows Full
  AttnRes: sublayer l draws on the embedding and every earlier sublayer output, ["emb", "sub1", .., "sub{l-1}"].

Example (a model whose blocks hold `res` modules taking a list of earlier outputs and a query `w`)::

    def weights(module, args, output):
        sources = torch.stack(args[0], dim=-2)                      # [batch, tokens, sources, d]
        return torch.softmax(module.norm(sources) @ module.w, -1)   # [batch, tokens, sources]

    adapter = Adapter(mixers=[f"blocks.{i}.res" for i in range(8)], weights=weights,
                      sublayers=[f"blocks.{i}.f" for i in range(8)])
    with Probe(model, adapter=adapter) as probe:
        model(x)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .errors import ProbeError
from .layout import FINAL_LABEL, TapSpec

WeightsFn = Callable[[nn.Module, tuple, Any], torch.Tensor]


def _numbered(names: Mapping[str, int] | Sequence[str]) -> dict[str, int]:
    if isinstance(names, Mapping):
        return {str(k): int(v) for k, v in names.items()}
    return {str(name): index for index, name in enumerate(names, start=1)}


def full_attnres_sources(sublayer: int) -> list[str]:
    """["emb", "sub1", ..., "sub{l-1}"]: the sources of sublayer l under Full AttnRes."""
    return ["emb"] + [f"sub{i}" for i in range(1, sublayer)]


@dataclass
class Adapter:
    """How to probe a model that has no depthscope taps (see the module docstring)."""

    mixers: Mapping[str, int] | Sequence[str]
    weights: WeightsFn
    sublayers: Mapping[str, int] | Sequence[str] = ()
    sources: Mapping[int, Sequence[str]] | Callable[[int], Sequence[str]] | None = None
    labels: Mapping[int, str] | Callable[[int], str] | None = None

    def source_labels(self, sublayer: int) -> tuple[str, ...]:
        if self.sources is None:
            return tuple(full_attnres_sources(sublayer))
        if isinstance(self.sources, Mapping):
            if sublayer not in self.sources:
                raise ProbeError(f"adapter: no source labels for sublayer {sublayer}")
            return tuple(self.sources[sublayer])
        return tuple(self.sources(sublayer))

    def sublayer_label(self, n_sublayers: int) -> Callable[[int], str]:
        def label(index: int) -> str:
            if self.labels is not None:
                return str(self.labels[index] if isinstance(self.labels, Mapping) else self.labels(index))
            return FINAL_LABEL if index > n_sublayers else f"sub{index}"

        return label

    def specs(self, model: nn.Module) -> list[TapSpec]:
        """Hook points of `model`; raises ProbeError naming any module that does not exist."""
        modules = dict(model.named_modules())
        mixers, sublayers = _numbered(self.mixers), _numbered(self.sublayers)
        missing = [n for n in list(mixers) + list(sublayers) if n not in modules]
        if missing:
            raise ProbeError(f"adapter: the model has no modules named {missing}")
        if not mixers:
            raise ProbeError("adapter: name at least one depth-mixing module")
        weights = self.weights

        def alpha(module: nn.Module, args: tuple, output: Any) -> torch.Tensor:
            with torch.no_grad():
                result = weights(module, args, output)
            if not isinstance(result, torch.Tensor) or result.dim() != 3:
                raise ProbeError(
                    f"adapter: weights() must return a [batch, tokens, sources] tensor, got "
                    f"{getattr(result, 'shape', type(result).__name__)}"
                )
            return result

        def first_input(module: nn.Module, args: tuple, output: Any) -> torch.Tensor:
            if not args or not isinstance(args[0], torch.Tensor):
                raise ProbeError("adapter: a sublayer module's first positional input must be the tensor h_l")
            return args[0]

        specs = [TapSpec(modules[n], n, "alpha", l, self.source_labels(l), alpha) for n, l in mixers.items()]
        for name, l in sublayers.items():
            specs.append(TapSpec(modules[name], name, "input", l, (), first_input))
            specs.append(TapSpec(modules[name], name, "output", l, ()))
        return specs

    def parameter_groups(self, model: nn.Module) -> dict[int, list[nn.Parameter]]:
        modules = dict(model.named_modules())
        return {
            l: [p for p in modules[name].parameters() if p.requires_grad]
            for name, l in _numbered(self.sublayers).items()
        }

    def n_sublayers(self) -> int:
        numbers = list(_numbered(self.sublayers).values()) or list(_numbered(self.mixers).values())
        return max(numbers)
