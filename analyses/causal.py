"""Causal check of routing: ablate a source (or a family of sources) at one sublayer and measure the loss change.

At inference, for every sublayer l and family F of its sources, the input h_l is recomputed without F and
everything downstream runs as usual; delta_loss = mean next-token loss (ablated) - mean loss (clean), over
the given tokens. Only h_l changes: other sublayers keep their own (clean) mixing.

  AttnRes (Full, Block)  a forward hook on sublayer l's depth-attention tap replaces alpha with
                         alpha * (1 - 1_F) / sum(alpha * (1 - 1_F)) (renormalised over the remaining sources);
                         if nothing remains, h_l = 0. Block AttnRes runs in its plain (not two-phase) form.
  residual               the weights are all 1, so h_l = x_{l-1} - sum_{s in F} v_s (the sources removed from the
                         sum), through a hook on the sublayer's input tap.
  DenseFormer, Hyper-Connections: not supported (their weights mix streams, not single sources).

Families (per sublayer, from `depthscope.analyses.sources`): "embedding"; "recent" = the nearest
non-embedding source(s) (the current partial for Block AttnRes, the predecessor for Full AttnRes and the
residual); "history" = every other non-embedding source (older history). `each=True` adds one family per
single source, named by its label.

The table sets delta_loss beside the routing mass of F at l in the clean pass (mean share of F over tokens)
and their ranks; `rank_gap` = effect rank - mass rank (over all rows) shows where routing mass and causal
importance part. `causal_summary` gives Spearman's rank correlation (scipy) overall and per family.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from depthscope.models import MIXERS, axis_label, kind_named

from .errors import AnalysisError
from .sources import geometry

FAMILIES = ("embedding", "recent", "history")


def _families(geo, slot: int, each: bool) -> dict[str, np.ndarray]:
    valid, emb, near = geo.valid[slot], geo.is_embedding[slot], geo.nearest[slot]
    out = {"embedding": valid & emb, "recent": valid & near & ~emb, "history": valid & ~near & ~emb}
    if each:
        for j in np.nonzero(valid)[0]:
            mask = np.zeros_like(valid)
            mask[j] = True
            out[f"source:{geo.source_labels[slot][j]}"] = mask
    return {k: v for k, v in out.items() if v.any()}


@contextmanager
def _plain_block(model):
    mixer = model.mixer
    old = getattr(mixer, "two_phase", None)
    if old:
        mixer.two_phase = False
    try:
        yield
    finally:
        if old:
            mixer.two_phase = old


def _loss(model, tokens, targets) -> float:
    logits = model(tokens)
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)))


@torch.no_grad()
def causal_ablation(model, tokens: torch.Tensor, targets: torch.Tensor, each: bool = False,
                    sublayers=None) -> pd.DataFrame:
    """Per (sublayer, family): sources, mass, delta_loss, clean_loss, ranks (module docstring).

    model: a depthscope DepthTransformer (mixer full_attnres, block_attnres or residual). tokens, targets:
    [batch, tokens] int64. sublayers: 1-based ids to ablate (default all, and the final mixer L + 1 for AttnRes).
    """
    from depthscope.models import iter_taps

    kind = kind_named(model.cfg.mixer)
    if not kind.causal_check:
        supported = tuple(k for k in MIXERS if kind_named(k).causal_check)
        raise AnalysisError(f"{kind.name} model", f"source ablation supports {supported}; {kind.name} mixes streams, "
                                                  "not single sources")
    if tokens.numel() == 0:
        raise AnalysisError("causal_ablation", "no tokens given")
    model.eval()
    alpha_taps = {tap.sublayer: tap for _, tap in iter_taps(model, "alpha")}
    input_taps = {tap.sublayer: tap for _, tap in iter_taps(model, "input")}
    output_taps = {tap.sublayer: tap for _, tap in iter_taps(model, "output")}
    subs = sorted(alpha_taps)
    if kind.additive:
        subs = [l for l in subs if l in input_taps]
    if sublayers is not None:
        subs = [l for l in subs if l in set(sublayers)]
    L = model.cfg.n_sublayers
    labels = [list(alpha_taps[l].labels) for l in subs]
    geo = geometry(labels, subs, [axis_label(l, L) for l in subs], unit=kind.unit)

    with _plain_block(model):
        clean_alpha: dict[int, torch.Tensor] = {}
        handles = [tap.register_forward_hook(lambda m, a, out, l=l: clean_alpha.__setitem__(l, out.detach().float()))
                   for l, tap in alpha_taps.items()]
        try:
            clean = _loss(model, tokens, targets)
        finally:
            for h in handles:
                h.remove()
        rows = []
        for slot, l in enumerate(subs):
            w = clean_alpha[l].abs()
            share = w / w.sum(-1, keepdim=True).clamp_min(1e-30)  # [b, t, sources]
            for family, mask in _families(geo, slot, each).items():
                keep = torch.from_numpy(~mask[: share.shape[-1]]).to(share.dtype)
                mass = float((share * (1 - keep)).sum(-1).mean())
                loss = _ablated_loss(model, kind, l, mask[: share.shape[-1]], alpha_taps, input_taps, output_taps,
                                     tokens, targets)
                rows.append({"sublayer": l, "sublayer_label": geo.sublayer_labels[slot], "kind": geo.kinds[slot],
                             "family": family,
                             "sources": ",".join(s for s, m in zip(geo.source_labels[slot], mask) if m),
                             "mass": mass, "clean_loss": clean, "ablated_loss": loss, "delta_loss": loss - clean})
    table = pd.DataFrame(rows)
    if len(table):
        table["mass_rank"] = table["mass"].rank(ascending=False)
        table["effect_rank"] = table["delta_loss"].rank(ascending=False)
        table["rank_gap"] = table["effect_rank"] - table["mass_rank"]
    return table


def _ablated_loss(model, kind, l, mask, alpha_taps, input_taps, output_taps, tokens, targets) -> float:
    handles = []
    if kind.additive:
        # h_l = x_{l-1} = v_0 + v_1 + ... + v_{l-1}: subtract the removed sources (captured in this same forward)
        values: dict[int, torch.Tensor] = {}
        handles.append(model.embed.register_forward_hook(lambda m, a, out: values.__setitem__(0, out)))
        for s, tap in output_taps.items():
            if s < l and mask[s]:
                handles.append(tap.register_forward_hook(lambda m, a, out, s=s: values.__setitem__(s, out)))
        removed = [int(j) for j in np.nonzero(mask)[0]]

        def replace_input(module, args, out):
            return out - sum(values[j] for j in removed)

        handles.append(input_taps[l].register_forward_hook(replace_input))
    else:
        keep = torch.from_numpy(~mask)

        def replace_alpha(module, args, out):
            kept = out * keep.to(out.dtype)
            total = kept.sum(-1, keepdim=True)
            return torch.where(total > 0, kept / total.clamp_min(1e-30), torch.zeros_like(kept))

        handles.append(alpha_taps[l].register_forward_hook(replace_alpha))
    try:
        return _loss(model, tokens, targets)
    finally:
        for h in handles:
            h.remove()


def causal_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation between routing mass and delta_loss: overall and per family (scipy)."""
    from scipy.stats import spearmanr

    rows = []
    groups = [("all", table)] + [(f, g) for f, g in table.groupby("family", sort=False)]
    for name, g in groups:
        if len(g) >= 3 and g["mass"].nunique() > 1 and g["delta_loss"].nunique() > 1:
            res = spearmanr(g["mass"], g["delta_loss"])
            rho, p = float(res.statistic), float(res.pvalue)
        else:
            rho = p = np.nan
        rows.append({"family": name, "n": len(g), "spearman_rho": rho, "p_value": p,
                     "mean_mass": g["mass"].mean(), "mean_delta_loss": g["delta_loss"].mean()})
    return pd.DataFrame(rows)
