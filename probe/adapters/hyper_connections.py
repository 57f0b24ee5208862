"""The PyPI package hyper-connections (0.4): HyperConnections (HC) and ManifoldConstrainedHyperConnections (mHC).

Each HC / mHC module wraps one sublayer (its `branch`) and takes the n residual streams [(batch streams), tokens,
d]. It forms, per token, the weights `pre` (streams into the branch input), the stream mixing `R` and the depth
weights `post` (the branch output into each stream) inside `width_connection`, which returns none of them: they
are recomputed here from the module's input with its own parameters, as its forward forms them. Unrolled over the
sublayers (depthscope.probe.hyper_mixing: the same definition the mixing analyses use), they give row l of the
effective mixing matrix M per token: sublayer l's weights over the sources emb, attn1, mlp1, ..., recorded as its
alpha (not a softmax: rows need not sum to 1), so HC / mHC runs get the routing views of AttnRes runs.

Sublayers are the HC modules in the order the model registers them (attention and MLP alternating); h_l is the
branch's input, f_l its output. Every sublayer must be recorded (the rows carry the streams from one sublayer to
the next). Supported: one input view, no fractions (num_fracs = 1), channel-last; anything else raises ProbeError.
A model that adds stream embeddings (add_stream_embed) starts its streams from more than the embedding, which M
does not describe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from depthscope.models import full_sources

from ..adapter import Adapter, Input, Output, Sublayer, Weights
from ..errors import ProbeError
from ..hyper_mixing import hyper_step, start_streams
from .common import from_package

PACKAGE = "hyper_connections"
CLASSES = ("HyperConnections", "ManifoldConstrainedHyperConnections")


def stream_weights(module: nn.Module, residuals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre [b, t, n], R [b, t, n, n], post [b, t, n]) of an HC / mHC module from its input [(b n), t, d]."""
    n = module.num_residual_streams
    if type(module).__name__ == "ManifoldConstrainedHyperConnections":
        residuals = module.residual_transform(residuals)
    streams = residuals.unflatten(0, (-1, n)).movedim(1, -2)  # [b, t, n, d]
    normed = module.norm(streams)
    if type(module).__name__ == "HyperConnections":
        alpha = module.act(normed @ module.dynamic_alpha_fn) * module.dynamic_alpha_scale + module.static_alpha
        beta = module.act(normed @ module.dynamic_beta_fn) * module.dynamic_beta_scale + module.static_beta
        return alpha[..., 0], alpha[..., 1:], beta  # alpha [b, t, n, 1 + n], beta [b, t, n]
    normed = normed.float()
    proposals = torch.einsum("btnd,pde->pbtne", normed, module.dynamic_alpha_fn.float())  # [p, b, t, n, 1 + n]
    scale = torch.cat([module.pre_branch_scale.float(), module.residual_scale.float().expand(n)])
    alpha = proposals * scale + module.static_alpha.float()
    pre = alpha[..., 0].sigmoid()  # [p, b, t, n]
    mix = module.residual_mix_constraint_fn(alpha[..., 1:])  # [p, b, t, n, n]
    pre, mix = pre.mean(0), mix.mean(0)
    beta = ((normed @ module.dynamic_beta_fn.float()) * module.h_post_scale.float() + module.static_beta.float())
    return pre, mix, beta.sigmoid() * 2


@dataclass
class HyperConnectionRows:
    """Weights(compute=...) for HC / mHC: row l of the effective mixing matrix M per token, [b, t, l] over
    emb, attn1, ..., sub_{l-1}. One object serves every sublayer (`at(l)`); it carries the streams' coefficients
    from one sublayer to the next within a forward."""

    sublayers: int
    _streams: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _last: int = field(default=0, repr=False, compare=False)

    def at(self, sublayer: int) -> "_Row":
        return _Row(self, sublayer)

    def row(self, module: nn.Module, residuals: torch.Tensor, sublayer: int) -> torch.Tensor:
        pre, mix, post = stream_weights(module, residuals.detach())
        b, t, n = pre.shape
        if sublayer == 1:
            self._streams = start_streams(b, t, n, self.sublayers + 1, device=pre.device, dtype=torch.float32)
        elif self._streams is None or self._last != sublayer - 1 or self._streams.shape[:3] != (b, t, n):
            raise ProbeError(f"hyper-connections: the mixing row of sublayer {sublayer} needs sublayer "
                             f"{sublayer - 1} recorded in the same forward (record every sublayer)")
        row, self._streams = hyper_step(self._streams, pre, mix, post, sublayer)
        self._last = sublayer
        return row[..., :sublayer]  # [b, t, sources]: emb and the outputs of sublayers 1 .. l - 1


@dataclass(frozen=True)
class _Row:
    rows: HyperConnectionRows
    sublayer: int

    def __call__(self, module, args, kwargs, output) -> torch.Tensor:
        residuals = args[0] if args else kwargs["residuals"]
        return self.rows.row(module, residuals, self.sublayer)


def _check(name: str, module: nn.Module) -> None:
    problems = [what for what, bad in (
        ("num_fracs > 1", getattr(module, "num_fracs", 1) != 1),
        ("num_input_views > 1", getattr(module, "num_input_views", 1) != 1),
        ("channel_first", getattr(module, "channel_first", False)),
        ("add_branch_out_to_residual=False", not getattr(module, "add_branch_out_to_residual", True)),
    ) if bad]
    if problems:
        raise ProbeError(f"hyper-connections: {name} ({type(module).__name__}) uses {', '.join(problems)}, which the "
                         f"built-in adapter does not read; describe it with an Adapter of your own")


def templates(names: list[str]) -> tuple[list[str], int]:
    """(pattern, repeat): names written as templates over {i} when they repeat with a counter, else as they are."""
    for per in (1, 2):
        if len(names) % per or len(names) < 2 * per:
            continue
        pattern = [re.sub(r"(^|\.)0(\.|$)", r"\g<1>{i}\g<2>", names[j], count=1) for j in range(per)]
        if all("{i}" in p for p in pattern) and all(
                names[i * per + j] == pattern[j].format(i=i) for i in range(len(names) // per) for j in range(per)):
            return pattern, len(names) // per
    return names, 1


def detect(model: nn.Module) -> Adapter | None:
    found = [(n, m) for n, m in model.named_modules() if from_package(m, PACKAGE) and type(m).__name__ in CLASSES]
    if not found:
        return None
    for name, module in found:
        _check(name, module)
    names = [n for n, _ in found]
    with_branch = all(m.branch is not None for _, m in found)
    pattern, repeat = templates(names)
    rows = HyperConnectionRows(len(names))
    sublayers = []
    for name in pattern:
        if with_branch:
            h, f, params = Input(f"{name}.branch"), Output(f"{name}.branch"), (f"{name}.branch",)
        else:  # branch called by the model itself: its input is the first thing the module returns
            h, f, params = Output(name, 0), None, ()
        sublayers.append(Sublayer("{label}", h=h, f=f, weights=Weights(name, compute=rows, softmax=False), params=params))
    d_model = int(found[0][1].norm.gamma.numel())
    kind = "mHC" if type(found[0][1]).__name__.startswith("Manifold") else "HC"
    return Adapter(pattern=sublayers, repeat=repeat, sources=full_sources, d_model=d_model,
                   name=f"hyper-connections {kind} ({found[0][1].num_residual_streams} streams)")
