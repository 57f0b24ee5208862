"""Describing a model written elsewhere: where each quantity the probe records flows through it.

A model built from depthscope's taps needs no adapter, and `Probe(model)` finds a built-in adapter for the
libraries in `depthscope.probe.adapters` (attn-res, hyper-connections, Hugging Face decoders). Any other model is
described by an `Adapter`: one `Sublayer` per sublayer l, each saying separately where

- `h`: the input h_l comes from: a module's input (`Input("blocks.0.norm")`, a positional index or a keyword
  argument name) or its output (`Output("blocks.0.mix")`, a tuple index or a dict key); its RMS and gradient;
- `f`: the output f_l comes from (`Output(...)`);
- `weights`: the depth weights come from: computed from a module's inputs and output (`compute(module, args,
  kwargs, output)`), or read from what the module returns (`key`); `source_axis` says which axis of that
  tensor runs over the sources (it is moved last: [batch, tokens, sources]);
- `params`: the modules whose parameters' gradient norm is sublayer l's;
- `sources`: the labels of its sources (per sublayer here, or for all sublayers on the Adapter).

Sublayers usually repeat: `pattern` lists the sublayers of one unit and `repeat` how many units there are.
Names and labels are templates, formatted per sublayer with {i} (unit, 0-based), {n} (= i + 1), {k} (sublayer,
0-based), {l} (= k + 1) and {label} (depthscope's label of sublayer l: attn1, mlp1, attn2, ...; "final"). Example (blocks of one mixer `mix` taking a list of earlier outputs, and one f)::

    def weights(module, args, kwargs, output):
        sources = torch.stack(args[0], dim=-2)                      # [batch, tokens, sources, d]
        return torch.softmax(module.norm(sources) @ module.w, -1)   # [batch, tokens, sources]

    adapter = Adapter(
        pattern=[Sublayer("sub{l}", h=Output("blocks.{i}.mix"), f=Output("blocks.{i}.f"),
                          weights=Weights("blocks.{i}.mix", compute=weights), params=("blocks.{i}.f",))],
        repeat=8)
    with Probe(model, adapter=adapter) as probe:
        model(x)

The first forward checks every tensor once and raises one ProbeError naming the module and the shape it saw
(weights not [batch, tokens, sources], a source count that disagrees with the labels, an h_l or f_l whose last
axis is not d_model); softmax weights whose rows do not sum to 1 give a warning.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from depthscope.models import FINAL, generic_sources, sublayer_label

from .errors import ProbeError
from .layout import TapSpec

# compute(module, args, kwargs, output) -> weights tensor (sources on `source_axis`)
ComputeFn = Callable[[nn.Module, tuple, dict, Any], torch.Tensor]
ROW_SUM_TOLERANCE = 1e-3


def code(value: Any) -> str:
    """Python source for `value` as a user would type it (functions by their import path)."""
    if isinstance(value, functools.partial):
        args = [code(value.func)] + [code(a) for a in value.args]
        args += [f"{k}={code(v)}" for k, v in value.keywords.items()]
        return f"functools.partial({', '.join(args)})"
    if callable(value) and hasattr(value, "__qualname__"):  # a function or a class (an instance has no __qualname__)
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


# ------------------------------------------------------------------------------------------------ sites


@dataclass(frozen=True)
class Site:
    """A tensor flowing through `module`: on its `side` ("input" or "output"), at `key`.

    Input: key is a positional index (default 0) or a keyword argument's name.
    Output: key None takes the output itself (the first element of a tuple); an int indexes a tuple; a str is a
    dict key or attribute (HF ModelOutput).
    """

    module: str
    side: str = "output"
    key: int | str | None = None

    def __post_init__(self):
        if self.side not in ("input", "output"):
            raise ProbeError(f"adapter: a Site's side is 'input' or 'output', not {self.side!r}")

    def __repr__(self) -> str:
        default = 0 if self.side == "input" else None
        key = "" if self.key == default else f", {self.key!r}"
        return f"{'Input' if self.side == 'input' else 'Output'}({self.module!r}{key})"

    def format(self, **names) -> "Site":
        return replace(self, module=self.module.format(**names))

    def take(self, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.side == "input":
            key = 0 if self.key is None else self.key
            if isinstance(key, int):
                if key < len(args):
                    return args[key]
                raise ProbeError(f"adapter: {self.module} was called with {len(args)} positional inputs, "
                                 f"so it has no input {key}" + (f" (keyword inputs: {sorted(kwargs)})" if kwargs else ""))
            if key in kwargs:
                return kwargs[key]
            raise ProbeError(f"adapter: {self.module} got no keyword input {key!r} (it got {sorted(kwargs)})")
        return pick(output, self.key, self.module)


def Input(module: str, key: int | str = 0) -> Site:
    """h_l (or anything) read from a module's input: a positional index or a keyword argument name."""
    return Site(module, "input", key)


def Output(module: str, key: int | str | None = None) -> Site:
    """A module's output: itself (None; a tuple's first element), a tuple index, or a dict key / attribute."""
    return Site(module, "output", key)


def pick(output: Any, key: int | str | None, where: str) -> Any:
    """The part of `output` at `key` (see Site)."""
    if key is None:
        if isinstance(output, (tuple, list)) and output:
            return output[0]
        return output
    if isinstance(key, int):
        if isinstance(output, (tuple, list)) and -len(output) <= key < len(output):
            return output[key]
        raise ProbeError(f"adapter: {where} returned {type(output).__name__}, which has no element {key}")
    if isinstance(output, Mapping) and key in output:
        return output[key]
    if hasattr(output, key):
        return getattr(output, key)
    raise ProbeError(f"adapter: {where} returned {type(output).__name__}, which has no {key!r}")


@dataclass(frozen=True)
class Weights:
    """Where sublayer l's depth weights come from: a forward of `module`.

    compute(module, args, kwargs, output) -> tensor: recomputed from the module's inputs (and output), e.g. a
    mixer whose fused kernel never forms them; otherwise the weights are read from the output at `key`. A compute
    object with a method `at(l)` gives the function of sublayer l (for weights that depend on earlier sublayers).
    source_axis: the axis of that tensor that runs over sources (moved last to give [batch, tokens, sources]).
    softmax: the rows should sum to 1 (checked once; a warning names the module if not).
    """

    module: str
    compute: ComputeFn | None = None
    key: int | str | None = None
    source_axis: int = -1
    softmax: bool = True

    def __repr__(self) -> str:
        parts = [repr(self.module)]
        if self.compute is not None:
            parts.append(f"compute={code(self.compute)}")
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        if self.source_axis != -1:
            parts.append(f"source_axis={self.source_axis}")
        if not self.softmax:
            parts.append("softmax=False")
        return f"Weights({', '.join(parts)})"

    def format(self, **names) -> "Weights":
        # a compute object with an `at(l)` method is specialised per sublayer (state carried across sublayers)
        compute = self.compute.at(names["l"]) if hasattr(self.compute, "at") else self.compute
        return replace(self, module=self.module.format(**names), compute=compute)


@dataclass(frozen=True)
class Sublayer:
    """Where sublayer l's quantities flow (module names and label are templates: see the module docstring)."""

    label: str
    h: Site | None = None
    f: Site | None = None
    weights: Weights | None = None
    params: tuple[str, ...] = ()
    sources: tuple[str, ...] | None = None
    residual: Site | None = None

    def __repr__(self) -> str:
        parts = [repr(self.label)]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value not in (None, ()):
                parts.append(f"{f.name}={tuple(value) if f.name == 'params' else value!r}")
        return f"Sublayer({', '.join(parts)})"

    def format(self, **names) -> "Sublayer":
        return replace(
            self,
            label=self.label.format(**names),
            h=None if self.h is None else self.h.format(**names),
            f=None if self.f is None else self.f.format(**names),
            weights=None if self.weights is None else self.weights.format(**names),
            params=tuple(p.format(**names) for p in self.params),
            residual=None if self.residual is None else self.residual.format(**names),
        )


# ------------------------------------------------------------------------------------------------ adapter


@dataclass
class Adapter:
    """How to probe a model that has no depthscope taps (see the module docstring).

    pattern: the sublayers of one repeated unit; repeat: how many units (sublayers 1 .. repeat * len(pattern)).
    final: the final mixer feeding the LM head (sublayer L + 1), if the model has one.
    sources: labels of sublayer l's sources, as a function of l or a mapping (default: Full AttnRes,
        ["emb", "sub1", ..]); a Sublayer's own `sources` wins.
    logits: where the model's output holds the logits: None finds them (a tensor; a tuple's first 3-d float
        tensor; a dict's or ModelOutput's "logits"), an int / str picks them, a function of the output returns them.
    labels: where the model's input holds the targets it computes its loss against (a positional index or a
        keyword name, or a tuple of places tried in order), and shift_labels whether token t is scored against label t + 1 (Hugging Face): with them,
        `commit(loss=model_loss)` records per-token losses that average to the model's loss.
    d_model: width of h_l and f_l (checked at the first forward); None takes the first one seen.
    name: what the adapter describes (stored in the run's manifest).
    """

    pattern: Sequence[Sublayer]
    repeat: int = 1
    final: Sublayer | None = None
    sources: Callable[[int], Sequence[str]] | Mapping[int, Sequence[str]] | None = None
    logits: int | str | Callable[[Any], torch.Tensor] | None = None
    labels: int | str | tuple[int | str, ...] | None = None
    shift_labels: bool = False
    d_model: int | None = None
    name: str = ""

    # ------------------------------------------------------------------------ printing

    def __repr__(self) -> str:
        lines = ["Adapter("]
        if self.name:
            lines.append(f"    name={self.name!r},")
        lines.append("    pattern=[")
        lines += [f"        {s!r}," for s in self.pattern]
        lines.append("    ],")
        if self.repeat != 1:
            lines.append(f"    repeat={self.repeat},")
        if self.final is not None:
            lines.append(f"    final={self.final!r},")
        if self.sources is not None:
            lines.append(f"    sources={code(self.sources)},")
        for name in ("logits", "labels"):
            value = getattr(self, name)
            if value is not None:
                lines.append(f"    {name}={code(value)},")
        if self.shift_labels:
            lines.append("    shift_labels=True,")
        if self.d_model is not None:
            lines.append(f"    d_model={self.d_model},")
        lines.append(")")
        return "\n".join(lines)

    # ------------------------------------------------------------------------ the sublayer axis

    def n_sublayers(self) -> int:
        return self.repeat * len(self.pattern)

    def expanded(self) -> list[tuple[int, Sublayer]]:
        """(l, the Sublayer with its names filled in) for l = 1..L, then L + 1 for the final mixer."""
        if self.repeat < 1 or not self.pattern:
            raise ProbeError("adapter: give at least one Sublayer in `pattern` and repeat >= 1")
        out = []
        per = len(self.pattern)
        for i in range(self.repeat):
            for j, template in enumerate(self.pattern):
                k = i * per + j
                out.append((k + 1, template.format(i=i, n=i + 1, k=k, l=k + 1, label=sublayer_label(k + 1))))
        if self.final is not None:
            L = self.n_sublayers()
            out.append((L + 1, self.final.format(i=self.repeat, n=self.repeat + 1, k=L, l=L + 1, label=FINAL)))
        return out

    def source_labels(self, sublayer: int, own: Sequence[str] | None = None) -> tuple[str, ...]:
        if own is not None:
            return tuple(own)
        if self.sources is None:
            return tuple(generic_sources(sublayer))
        if isinstance(self.sources, Mapping):
            if sublayer not in self.sources:
                raise ProbeError(f"adapter: no source labels for sublayer {sublayer}")
            return tuple(self.sources[sublayer])
        return tuple(self.sources(sublayer))

    def sublayer_label(self, n_sublayers: int | None = None) -> Callable[[int], str]:
        """Label of each 1-based sublayer (n_sublayers is not needed: the pattern fixes the axis)."""
        labels = {l: s.label for l, s in self.expanded()}

        def label(index: int) -> str:
            return labels.get(index, FINAL)

        return label

    # ------------------------------------------------------------------------ hook points

    def specs(self, model: nn.Module) -> list[TapSpec]:
        """Hook points of `model`; raises ProbeError naming any module that does not exist."""
        modules = dict(model.named_modules())
        expanded = self.expanded()
        wanted = []
        for _, s in expanded:
            wanted += [site.module for site in (s.h, s.f, s.weights, s.residual) if site is not None]
            wanted += list(s.params)
        missing = sorted({n for n in wanted if n not in modules})
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise ProbeError(f"adapter: the model ({type(model).__name__}) has no modules named {shown}")
        width = [self.d_model]  # shared by every h_l / f_l check: the first one seen fixes it when not given
        specs = []
        for l, s in expanded:
            if s.weights is not None:
                labels = self.source_labels(l, s.sources)
                specs.append(TapSpec(modules[s.weights.module], s.weights.module, "alpha", l, labels,
                                     _weights_reader(s.weights, labels), with_kwargs=True))
            for what, site in (("input", s.h), ("output", s.f), ("residual", s.residual)):
                if site is not None:
                    specs.append(TapSpec(modules[site.module], site.module, what, l, (),
                                         _hidden_reader(site, what, l, width), with_kwargs=True))
        return specs

    def parameter_groups(self, model: nn.Module) -> dict[int, list[nn.Parameter]]:
        modules = dict(model.named_modules())
        groups: dict[int, list[nn.Parameter]] = {}
        for l, s in self.expanded():
            seen: set[int] = set()
            params = []
            for name in s.params:
                for p in modules[name].parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
            if params:
                groups[l] = params
        return groups

    # ------------------------------------------------------------------------ the model's output

    def find_logits(self, output: Any) -> torch.Tensor | None:
        return find_logits(output, self.logits)

    def find_labels(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """The labels the model was given (the first of `labels`' places that holds a tensor), or None."""
        places = self.labels if isinstance(self.labels, tuple) else (self.labels,)
        for place in places:
            if isinstance(place, int):
                value = args[place] if place < len(args) else None
            else:
                value = None if place is None else kwargs.get(place)
            if isinstance(value, torch.Tensor):
                return value
        return None


def find_logits(output: Any, how: int | str | Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor | None:
    """The logits in a model's output: a tensor, a tuple's first 3-d float tensor, a dict's / ModelOutput's
    "logits"; `how` picks them explicitly (an index, a key, or a function of the output)."""
    if callable(how):
        return how(output)
    if how is not None:
        return pick(output, how, "the model")
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        value = output.get("logits")
        return value if isinstance(value, torch.Tensor) else None
    if isinstance(output, (tuple, list)):
        return next((x for x in output if isinstance(x, torch.Tensor) and x.dim() == 3 and x.is_floating_point()),
                    None)
    value = getattr(output, "logits", None)
    return value if isinstance(value, torch.Tensor) else None


# ------------------------------------------------------------------------------------------------ readers


def _weights_reader(spec: Weights, labels: tuple[str, ...]):
    """extract(module, args, kwargs, output) -> [batch, tokens, sources]; checks the first value it sees."""
    checked = [False]
    compute, key, axis, where = spec.compute, spec.key, spec.source_axis, spec.module

    def read(module, args, kwargs, output):
        if compute is not None:
            with torch.no_grad():
                value = compute(module, args, kwargs, output)
        else:
            value = pick(output, key, where)
        if not isinstance(value, torch.Tensor):
            raise ProbeError(f"adapter: the weights at {where} are a {type(value).__name__}, not a tensor")
        if axis != -1 and axis != value.dim() - 1:
            value = value.movedim(axis, -1)
        if not checked[0]:
            _check_weights(value, labels, where, spec.softmax)
            checked[0] = True
        return value

    return read


def _check_weights(value: torch.Tensor, labels: tuple[str, ...], where: str, softmax: bool) -> None:
    shape = tuple(value.shape)
    if value.dim() != 3:
        raise ProbeError(f"adapter: the weights at {where} have shape {shape} (sources moved last); expected "
                         f"[batch, tokens, sources] (is source_axis right?)")
    if shape[-1] != len(labels):
        raise ProbeError(f"adapter: the weights at {where} have shape {shape}: {shape[-1]} sources, but the "
                         f"sublayer has {len(labels)} source labels {list(labels)}")
    if not value.is_floating_point():
        raise ProbeError(f"adapter: the weights at {where} are {value.dtype}, not floating point")
    if softmax:
        rows = value.detach().float().sum(-1)
        worst = float((rows - 1).abs().max()) if rows.numel() else 0.0
        if not worst <= ROW_SUM_TOLERANCE:
            warnings.warn(f"adapter: the softmax weights at {where} (shape {shape}) have rows summing to 1 +- "
                          f"{worst:.3g}; are they the weights over sources (source_axis), or not a softmax "
                          f"(Weights(softmax=False))?", stacklevel=2)


def _hidden_reader(site: Site, what: str, sublayer: int, width: list):
    """extract(module, args, kwargs, output) -> [batch, tokens, d_model]; checks the first value it sees."""
    checked = [False]
    name = {"input": "h_l", "output": "f_l", "residual": "x_l"}[what]

    def read(module, args, kwargs, output):
        value = site.take(args, kwargs, output)
        if not checked[0]:
            shape = tuple(getattr(value, "shape", ()))
            if not isinstance(value, torch.Tensor) or value.dim() != 3:
                raise ProbeError(
                    f"adapter: {name} of sublayer {sublayer} at {site!r} is "
                    + (f"a tensor of shape {shape}" if isinstance(value, torch.Tensor) else type(value).__name__)
                    + "; expected [batch, tokens, d_model]")
            if width[0] is None:
                width[0] = shape[-1]
            elif shape[-1] != width[0]:
                raise ProbeError(f"adapter: {name} of sublayer {sublayer} at {site!r} has shape {shape}: its last "
                                 f"axis is not d_model = {width[0]}")
            checked[0] = True
        return value

    return read
