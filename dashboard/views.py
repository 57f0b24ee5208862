"""Views: (catalogue, view parameters) -> figure. The one place where a view's parameters (the same ones the URL
carries) become a figure, shared by the app's callbacks, the app's download button and `depthscope export`.

Parameters are strings (as in a URL query): run, baseline, others (comma-separated), start, stop, doc, regex,
cell ("slot,source"), token, wstart, wlen, slot, stat, k, quantity, grad, training, step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from depthscope.analyses import param_grad_profile, uniformity
from depthscope.models import statistic_label
from depthscope.probe import RunError

from . import figures as F
from .data import RMS_NAMES, TOKEN_STATS, Filter, FilterError, difference_frame
from .params import ParamError, parse
from .runs import Catalogue

Params = dict


def flt(params: Params) -> Filter:
    return Filter(start=parse(params, "start"), stop=parse(params, "stop"), document=parse(params, "doc"),
                  regex=params.get("regex") or None)


def need_run(params: Params, key: str = "run") -> str:
    run_id = params.get(key)
    if not run_id:
        raise FilterError("choose a run on the Runs page" if key == "run" else f"choose a {key}")
    return run_id


def cell_of(params: Params) -> tuple[int, int] | None:
    value = params.get("cell")
    if not value:
        return None
    try:
        slot, source = (int(x) for x in str(value).split(","))
        return slot, source
    except ValueError:
        raise FilterError(f"cell must be 'slot,source', got {value!r}") from None


# ------------------------------------------------------------------------------------------------ routing


def routing(cat: Catalogue, params: Params):
    """(figure, result) of the filtered token-averaged heatmap."""
    run_id = need_run(params)
    data = cat.ready_data(run_id)
    result = data.routing(flt(params))
    sampled = f" — {result.note}" if result.note else ""
    title = f"Depth attention of {run_id}<br><sup>{flt(params).describe()}; {result.tokens:,} tokens{sampled}</sup>"
    fig = F.routing_heatmap(result.frame, title, columns=data.columns, scale=heatmap_scale(params))
    return fig, result


def heatmap_scale(params: Params) -> str | None:
    """The `scale` parameter (figures.style.HEATMAP_SCALES), None for the builders' default."""
    scale = params.get("scale") or None
    if scale is not None and scale not in F.style.HEATMAP_SCALES:
        raise FilterError(f"scale must be one of {', '.join(F.style.HEATMAP_SCALES)}, got {scale!r}")
    return scale


def cell(cat: Catalogue, params: Params):
    """(figure, CellResult, label) of the clicked cell, or (None, None, None) when no cell is selected."""
    run_id = need_run(params)
    where = cell_of(params)
    if where is None:
        return None, None, None
    data = cat.ready_data(run_id)
    if not hasattr(data, "cell"):
        raise FilterError("this run kept summaries only: no per-token distribution")
    slot, source = where
    res = data.cell(slot, source, flt(params))
    run = data.run
    label = f"{run.sublayer_labels[slot]} ← {run.source_labels[slot][source]}"
    fig = F.cell_distribution(res.edges, res.counts, f"Weight {label} over {res.tokens:,} tokens", res.note)
    return fig, res, label


# ------------------------------------------------------------------------------------------------ tokens


def slot_of(data, params: Params) -> int:
    """Sublayer-axis position of the Tokens page's "At sublayer" (default: the middle routed sublayer)."""
    labels = data.run.sublayer_labels
    routed = [i for i, r in enumerate(data.run.source_labels) if r]
    value = params.get("slot")
    if value:
        if value not in labels or labels.index(value) not in routed:
            names = ", ".join(labels[i] for i in routed)
            raise ParamError("slot", f"At sublayer must be one of this run's routed sublayers ({names}), got {value!r}")
        return labels.index(value)
    return routed[len(routed) // 2] if routed else 0


def token_stat(data, params: Params) -> str:
    """The Tokens page's statistic: the one chosen, refused with the reason and the alternatives when it is
    NaN for every token of this run; by default the first of TOKEN_STATS that varies between the window's tokens
    at the chosen sublayer (Block AttnRes's long-range mass at the middle sublayer is 0 for every token)."""
    chosen = params.get("stat")
    if chosen and chosen not in TOKEN_STATS + RMS_NAMES:
        raise ParamError("stat", f"Statistic must be one of {', '.join(TOKEN_STATS + RMS_NAMES)}, got {chosen!r}")
    if chosen in RMS_NAMES:
        return chosen
    start, stop = window(params, data.run.n_tokens)
    kinds = data.stat_kinds(start, stop, slot_of(data, params), parse(params, "k"))
    if chosen:
        if kinds.get(chosen) == "undefined":
            kind = str((data.run.model or {}).get("kind", ""))
            why = ("its sources are parallel residual streams, which have no depth distance"
                   if data.run.mixer_kind.unit == "none"
                   else "it is NaN for every token here")
            usable = [statistic_label(s) for s, v in kinds.items() if v != "undefined"]
            recorded = [statistic_label(s) for s in RMS_NAMES if s in data.run.arrays]
            raise ParamError("stat", f"{statistic_label(chosen)} is not defined for this {kind} run: "
                                     f"{why}. Choose one that is: {', '.join(usable + recorded)}.")
        return chosen
    for wanted in ("varies", "constant"):
        for name in TOKEN_STATS:
            if kinds.get(name) == wanted:
                return name
    return "input_rms"


def window(params: Params, n_tokens: int) -> tuple[int, int]:
    """[start, stop) of the Tokens page's window; ParamError when the start lies past the run's end."""
    start = parse(params, "wstart", 0)
    length = parse(params, "wlen", 512)
    if start >= n_tokens:
        raise ParamError("wstart", f"Window start must be below {n_tokens:,} (the run's tokens), got {start}")
    return start, min(n_tokens, start + length)


def token_text(cat: Catalogue, params: Params) -> go.Figure:
    run_id = need_run(params)
    data = cat.ready_data(run_id)
    stat = token_stat(data, params)
    start, stop = window(params, data.run.n_tokens)
    slot = slot_of(data, params)
    if stat in RMS_NAMES:
        values, _, _ = data.stat_matrix(start, stop, stat)
        frame = data.token_window(start, stop, slot, parse(params, "k"))
        frame[stat] = values[:, slot]
    else:
        frame = data.token_window(start, stop, slot, parse(params, "k"))
    label = data.run.sublayer_labels[slot]
    return F.token_text(frame, stat, f"{run_id}: tokens {start}..{stop - 1} coloured by {statistic_label(stat)} at {label}")


def token_heatmap(cat: Catalogue, params: Params) -> go.Figure:
    run_id = need_run(params)
    data = cat.ready_data(run_id)
    stat = token_stat(data, params)
    start, stop = window(params, data.run.n_tokens)
    stop = min(stop, start + 256)  # a readable strip
    values, labels, index = data.stat_matrix(start, stop, stat, parse(params, "k"))
    chars = [data.context(int(i), 0, 0).strip("[]") for i in index] if len(index) <= 256 else []
    return F.token_heatmap(values, labels, index, chars, stat,
                           f"{statistic_label(stat)} per token and sublayer ({run_id})")


def _clicked_token(cat: Catalogue, params: Params):
    """(the run's data, the token chosen in the URL, or None when none or out of range)."""
    data = cat.ready_data(need_run(params))
    token = parse(params, "token")
    if token is not None and token >= data.run.n_tokens:
        raise ParamError("token", f"Token must be below {data.run.n_tokens:,} (the run's tokens), got {token}")
    return data, token


def token_routing(cat: Catalogue, params: Params) -> go.Figure:
    data, token = _clicked_token(cat, params)
    if token is None:
        return F.empty_figure("Click a token in the text to see its own routing.", "One token's depth attention")
    return F.routing_heatmap(data.token_matrix(token), f"Token {token} '{data.context(token, 8, 4)}'",
                             columns=data.columns, colorbar_title="weight")


def token_norms(cat: Catalogue, params: Params) -> go.Figure:
    data, token = _clicked_token(cat, params)
    if token is None:
        return F.empty_figure("Click a token in the text to see its norm profile.", "Norm profile")
    return F.norm_profile(data.token_norms(token), f"Norm profile of token {token}")


# ------------------------------------------------------------------------------------------------ signal


def run_list(params: Params) -> list[str]:
    names = [params.get("run"), params.get("baseline")] + str(params.get("others") or "").split(",")
    out = []
    for n in names:
        if n and n not in out:
            out.append(n)
    return out


def signal(cat: Catalogue, params: Params) -> go.Figure:
    """RMS against depth of the run, its baseline and the others; each run keeps its colour (its place in
    run_list) whichever quantity is shown, also when another run did not record that quantity."""
    need_run(params)
    quantity = params.get("quantity") or "output_rms"
    if quantity not in RMS_NAMES:
        raise ParamError("quantity", f"Quantity must be one of {', '.join(RMS_NAMES)}, got {quantity!r}")
    profiles = {}
    for run_id in run_list(params):
        profiles[run_id] = cat.ready_data(run_id).rms_profile(quantity)
    return F.signal_vs_depth(profiles, quantity, baseline=params.get("baseline"))


def signal_missing(cat: Catalogue, params: Params) -> list[str]:
    """The runs of the Signal view that did not record its quantity (named in a note beside the figure)."""
    quantity = params.get("quantity") or "output_rms"
    return [r for r in run_list(params) if not len(cat.ready_data(r).rms_profile(quantity))]


def grad_uniformity(profile: pd.DataFrame) -> dict:
    """Coefficient of variation and max/min across sublayers of the mean gradient norms
    (depthscope.analyses.gradients.uniformity over the sublayers with a positive gradient); {} when none."""
    m = profile["mean"].to_numpy(dtype=float)
    u = uniformity(m[np.isfinite(m) & (m > 0)])
    return {"cv": u["cv"], "max_min": u["max_min"]} if np.isfinite(u["cv"]) else {}


def gradients(cat: Catalogue, params: Params) -> go.Figure:
    need_run(params)
    kind = params.get("grad") or "param"
    frames, uniformity = {}, {}
    for run_id in run_list(params):
        data = cat.ready_data(run_id)
        if kind == "activation":
            prof = data.rms_profile("grad_rms")
            frame = pd.DataFrame({"label": prof.get("label", []), "mean": prof.get("p50", prof.get("mean", [])),
                                  "lo": prof.get("p25"), "hi": prof.get("p75")}) if len(prof) else prof
        else:
            frame = cat.analysis(run_id, ("gradient profile",), lambda: param_grad_profile(data.run))
        frames[run_id] = frame
        if len(frame):
            uniformity[run_id] = grad_uniformity(frame)
    if kind == "activation":
        return F.gradients_vs_depth(frames, uniformity, params.get("baseline"),
                                    "Activation gradient per sublayer (median and 25-75 % over tokens)",
                                    "RMS of dLoss/dh_l")
    return F.gradients_vs_depth(frames, uniformity, params.get("baseline"),
                                "Parameter-gradient norm per sublayer (mean and 25-75 % over steps)")


def grad_steps(cat: Catalogue, params: Params) -> go.Figure:
    rows = []
    for training, infos in cat.trainings().items():
        for info in infos:
            try:
                run = cat.open(info.id)
                prof = cat.analysis(info.id, ("gradient profile",), lambda: param_grad_profile(run))
            except RunError:
                continue
            u = grad_uniformity(prof) if len(prof) else {}
            if u:
                rows.append({"training": training, "step": info.step, "run": info.id, **u})
    return F.uniformity_over_steps(pd.DataFrame(rows))


# ------------------------------------------------------------------------------------------------ statistics


def routing_stats(cat: Catalogue, params: Params, run_key: str = "run"):
    """depthscope.analyses.routing.routing_stats of a run, cached (background for large runs)."""
    from depthscope.analyses import routing_stats as compute

    run_id = need_run(params, run_key)
    k = parse(params, "k")
    run = cat.open(run_id)
    if "alpha" not in run.arrays:
        raise FilterError(f"{run_id} recorded no depth-attention weights")
    if k is None:  # the default window: taken in the run's aggregation scan
        data = cat.ready_data(run_id)
        if hasattr(data, "routing_stats"):
            return data.routing_stats()
    return cat.analysis(run_id, ("routing statistics", k), lambda: compute(run, k=k))


def jumps(cat: Catalogue, params: Params) -> go.Figure:
    r = routing_stats(cat, params)
    return F.jump_histogram(r.jumps, f"Distance of each token's top source ({params.get('run')})", r.k, r.unit)


def long_range(cat: Catalogue, params: Params) -> go.Figure:
    r = routing_stats(cat, params)
    return F.long_range_per_sublayer(r.sublayers, f"Long-range mass, embedding weight and locality ({params.get('run')})", r.k)


def sinks(cat: Catalogue, params: Params) -> go.Figure:
    r = routing_stats(cat, params)
    return F.sinks(r.sources, f"Depth sinks ({params.get('run')})")


def ablation(cat: Catalogue, params: Params) -> go.Figure:
    """Causal source ablation beside routing mass: the catalogue's ablation workflow (handed in by the command
    line: it loads the run's checkpoint) when there is one."""
    from depthscope.analyses import AnalysisError

    fn = cat.ablation
    if fn is None:
        return F.empty_figure("Causal source ablation: not at hand here (`depthscope serve` runs it).",
                              "Causal source ablation beside routing mass")
    run_id = need_run(params)
    run = cat.open(run_id)
    try:
        frame = cat.analysis(run_id, ("source ablation",), lambda: fn(run))
    except AnalysisError as err:
        return F.empty_figure(f"No causal ablation for this run: {err}", "Causal source ablation beside routing mass")
    return F.ablation_vs_mass(frame)


# ------------------------------------------------------------------------------------------------ compare


def compare(cat: Catalogue, params: Params):
    """(figure of run, figure of other, difference figure) on one shared colour scale."""
    a_id = need_run(params)
    b_id = params.get("other") or params.get("baseline")
    if not b_id:
        raise FilterError("choose a second run (or a baseline) to compare with")
    da, db = cat.ready_data(a_id), cat.ready_data(b_id)
    ra, rb = da.routing(), db.routing()
    both = pd.concat([ra.frame["mean"], rb.frame["mean"]])
    zmin, zmax = float(np.nanmin(both)) if len(both) else 0.0, float(np.nanmax(both)) if len(both) else 1.0
    cols = da.columns + [c for c in db.columns if c not in da.columns]
    fa = F.routing_heatmap(ra.frame, f"{a_id}", columns=cols, zmin=zmin, zmax=zmax)
    fb = F.routing_heatmap(rb.frame, f"{b_id}", columns=cols, zmin=zmin, zmax=zmax)
    diff = difference_frame(ra.frame, rb.frame)
    if len(diff):
        fd = F.routing_difference(diff, f"{a_id} − {b_id}", columns=cols)
    else:
        fd = F.empty_figure("These runs share no (sublayer, source) pair: no difference to draw.", "Difference")
    return fa, fb, fd


# ------------------------------------------------------------------------------------------------ evolution


def evolution_runs(cat: Catalogue, params: Params):
    """(training key, its step runs, every training) for the Evolution page: the training in the URL, else the
    chosen run's training, else the first; ParamError for a training or step this folder does not hold."""
    trainings = cat.trainings()
    if not trainings:
        return None, [], {}
    training = params.get("training")
    if training and training not in trainings:
        names = ", ".join(training_label(t, v) for t, v in trainings.items())
        raise ParamError("training", f"Training must be one of this folder's trainings ({names}), got {training!r}")
    if not training:
        of_run = {i.id: t for t, infos in trainings.items() for i in infos}
        training = of_run.get(params.get("run") or "", next(iter(trainings)))
    infos = trainings[training]
    step = parse(params, "step")
    if step is not None and step not in {i.step for i in infos}:
        steps = ", ".join(str(i.step) for i in infos)
        raise ParamError("step", f"Training step must be one of the recorded steps ({steps}), got {step}")
    return training, infos, trainings


def training_label(training: str, infos) -> str:
    """A training as people name it: its checkpoint folder's name, the model kind and the recorded steps (not the
    relative path the checkpoints were recorded from)."""
    steps = sorted(i.step for i in infos)
    return f"{PurePath(training).name} · {infos[0].kind} · {len(steps)} checkpoints, steps {steps[0]}–{steps[-1]}"


def evolution_routing(cat: Catalogue, params: Params) -> go.Figure:
    training, infos, _ = evolution_runs(cat, params)
    if not infos:
        return F.empty_figure("No training here left several recorded checkpoints (record step_* checkpoints).",
                              "Evolution over training")
    step = parse(params, "step", infos[-1].step)
    info = min(infos, key=lambda i: abs(i.step - step))
    data = cat.ready_data(info.id)
    res = data.routing()
    return F.routing_heatmap(res.frame, f"Depth attention of {PurePath(training).name} at step {info.step} ({info.id})",
                             columns=data.columns,
                             zmin=0.0, zmax=1.0)


def evolution_stat(cat: Catalogue, params: Params) -> go.Figure:
    training, infos, _ = evolution_runs(cat, params)
    stat = params.get("stat") or "embedding"
    if stat not in TOKEN_STATS + ("jump_rate",):
        raise ParamError("stat", f"Statistic must be one of {', '.join(TOKEN_STATS + ('jump_rate',))}, got {stat!r}")
    rows = []
    for info in infos:
        r = routing_stats(cat, {"run": info.id, "k": params.get("k")})
        part = r.by_kind.copy()
        part["step"] = info.step
        rows.append(part)
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return F.statistic_over_steps(frame, stat, parse(params, "step"))


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class FigureSpec:
    name: str
    build: Callable[[Catalogue, Params], go.Figure]
    matrix: bool  # drawn with matplotlib on export (true vector heatmaps)
    statistic: str
    params: tuple[str, ...]  # the parameters it depends on (written into the export manifest)


FIGURES: dict[str, FigureSpec] = {s.name: s for s in [
    FigureSpec("routing", lambda c, p: routing(c, p)[0], True, "token-averaged depth attention (mean weight)",
               ("run", "start", "stop", "doc", "regex", "scale")),
    FigureSpec("cell", lambda c, p: cell(c, p)[0] or F.empty_figure("No cell selected."), False,
               "distribution over tokens of one weight", ("run", "cell", "start", "stop", "doc", "regex")),
    FigureSpec("tokens", token_text, True, "text coloured by a per-token routing statistic",
               ("run", "wstart", "wlen", "slot", "stat", "k")),
    FigureSpec("token_heatmap", token_heatmap, True, "per-token statistic, token x sublayer",
               ("run", "wstart", "wlen", "stat", "k")),
    FigureSpec("token_routing", token_routing, True, "one token's depth attention", ("run", "token")),
    FigureSpec("token_norms", token_norms, False, "one token's RMS profile", ("run", "token")),
    FigureSpec("signal", signal, False, "RMS against depth with percentile bands and ratio to baseline",
               ("run", "baseline", "others", "quantity")),
    FigureSpec("gradients", gradients, False, "gradient magnitude per sublayer", ("run", "baseline", "others", "grad")),
    FigureSpec("grad_steps", grad_steps, False, "gradient uniformity across checkpoints", ()),
    FigureSpec("jumps", jumps, False, "jump-distance histogram (analyses.routing)", ("run", "k")),
    FigureSpec("long_range", long_range, False, "long-range mass per sublayer (analyses.routing)", ("run", "k")),
    FigureSpec("sinks", sinks, False, "depth sinks (analyses.routing)", ("run", "k")),
    FigureSpec("ablation", ablation, False, "causal source ablation beside routing mass", ("run",)),
    FigureSpec("compare", lambda c, p: compare(c, p)[2], True, "difference of token-averaged depth attention",
               ("run", "other", "baseline")),
    FigureSpec("compare_run", lambda c, p: compare(c, p)[0], True, "depth attention on a shared scale",
               ("run", "other", "baseline")),
    FigureSpec("compare_other", lambda c, p: compare(c, p)[1], True, "depth attention on a shared scale",
               ("run", "other", "baseline")),
    FigureSpec("evolution", evolution_routing, True, "depth attention at one training step", ("training", "step")),
    FigureSpec("evolution_stat", evolution_stat, False, "routing statistic over training", ("training", "step", "stat", "k")),
]}
