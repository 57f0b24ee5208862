"""Everything `depthscope analyze` computes for a run (and optionally a baseline), as named tidy tables.

`analyze(run, baseline=None)` returns an `Analysis`: `tables` (name -> DataFrame; written as Parquet and CSV by
`write`) and the grouped sums used for confidence intervals (`comparison.py`). Each table comes from one module:
routing*, mixing* (routing.py, mixing.py), signal, signal_growth, signal_vs_baseline, block_resets (signal.py),
gradients, gradient_uniformity (gradients.py), causal, causal_summary (causal.py, when the run's checkpoint is
at hand), estimates and compare (comparison.py). A table a run cannot give is skipped, with the reason in `notes`.

A run is read in one scan (scanner.py): its reducers are the routing sums (which also give the token-mean weights
for the mixing matrix and the per-group routing sums for the confidence intervals), the RMS moments of the
signal and gradient tables, and the per-group RMS and loss sums. Only the document ids are read before it
(the bootstrap groups must be numbered before sums are taken per group).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from depthscope.probe import RunError

from .errors import AnalysisError
from .runs import as_run, mixer_kind, model_kind, run_name
from .scanner import scan

# the causal check of a run on `max_tokens` tokens -> causal.causal_ablation's table; it loads the run's
# checkpoint and text, a workflow the caller hands in (depthscope.causal_check.causal_from_run)
CausalCheck = Callable[[object, int], pd.DataFrame]

# Run-level statistics given with CIs in `estimates` and compared in `compare` (every other statistic of
# compare.statistics, e.g. per sublayer "locality@mlp3", is one call of compare.estimate / compare.compare away).
REPORTED = (
    "loss", "input_rms_last_first", "input_rms_log_slope", "input_rms_max_min", "input_rms_last_first3",
    "input_rms_log_slope3", "output_rms_last_first3", "output_rms_log_slope3", "output_rms_last_first",
    "output_rms_log_slope", "residual_rms_last_first", "residual_rms_log_slope", "grad_rms_cv", "grad_rms_max_min",
    "grad_rms_early_late", "locality", "locality_attn", "locality_mlp", "locality_excess", "long_range",
    "long_range_attn", "long_range_mlp", "embedding", "embedding_attn", "embedding_mlp", "embedding_attn_minus_mlp",
    "norm_entropy", "norm_entropy_attn", "norm_entropy_mlp", "norm_entropy_mlp_minus_attn", "jump_rate",
    "top_embedding_rate", "param_grad_cv", "param_grad_max_min", "param_grad_early_late", "param_grad_rms_cv",
)


@dataclass
class Analysis:
    run: object
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # sections skipped because the run's files could not be read (truncated or corrupt chunk, missing file):
    # unlike a section that does not apply to the run's kind, these make `depthscope analyze` fail
    failures: list[str] = field(default_factory=list)
    sums: object = None
    param_sums: object = None
    baseline: "Analysis | None" = None
    window: tuple[float, str] | None = None  # (k, unit) of long-range mass and jumps

    @property
    def name(self) -> str:
        return Path(run_name(self.run)).name

    @property
    def kind(self) -> str:
        return model_kind(self.run) or "unknown"


def _try(analysis: Analysis, what: str, fn):
    """fn(), or None with the reason in notes; a section lost to unreadable data is also kept in failures."""
    try:
        return fn()
    except RunError as err:
        analysis.notes.append(f"{what}: skipped ({err})")
        analysis.failures.append(f"{what}: {err}")
        return None
    except (AnalysisError, KeyError, ValueError) as err:
        analysis.notes.append(f"{what}: skipped ({err})")
        return None


def analyze_one(run, k: float | None = None, unit: str = "auto", causal: CausalCheck | None = None,
                causal_tokens: int = 1024, chunk_tokens: int | None = None) -> Analysis:
    from .causal import causal_summary
    from .comparison import GroupedRms, grouped_sums, grouped_sums_of, param_grad_sums
    from .gradients import gradient_profile, gradient_uniformity
    from .groups import group_index
    from .log_histogram import MomentsReducer
    from .mixing import mixing_from_run, mixing_tables
    from .routing import RoutingAccumulator
    from .signal import block_bounds_of, block_resets, signal_frame, signal_growth, signal_reducers

    run = as_run(run)
    if run.n_tokens == 0:
        raise AnalysisError(run_name(run), "the run holds no tokens")
    out = Analysis(run)
    t = out.tables
    # the reducers of the one scan (a reducer that cannot be made keeps its error for its section below)
    reducers: dict = {}
    unmade: dict[str, Exception] = {}

    def plan(name: str, make) -> None:
        try:
            made = make()
        except (AnalysisError, KeyError, ValueError) as err:
            unmade[name] = err
            return
        reducers.update(made if isinstance(made, dict) else {name: made})

    groups = None
    if "alpha" in run.captured:
        # the bootstrap groups, so that the routing reducer sums per group too (a unit the run cannot give is
        # noted by grouped_sums below, as before)
        try:
            groups = group_index(run, unit, chunk_tokens=chunk_tokens)
        except (AnalysisError, ValueError):
            groups = None
        plan("routing", lambda: RoutingAccumulator.of_run(run, k, groups))
    plan("signal", lambda: {f"signal:{q}": r for q, r in signal_reducers(run).items()})
    if "grad_rms" in run.captured:
        plan("grad_rms", lambda: MomentsReducer("grad_rms", len(run.sublayers)))
    if groups is not None:
        plan("rms", lambda: GroupedRms(run, groups))
    results = scan(run, reducers, chunk_tokens)

    def result(name: str):
        if name in unmade:
            raise unmade[name]
        return results[name]

    routing = None
    if "alpha" in run.captured:
        routing = _try(out, "routing", lambda: result("routing"))
        if routing is not None:
            t.update(routing.frames())
            out.window = (routing.k, routing.unit)
        if mixer_kind(run).weights_give_mixing:
            weights = routing.mean_alpha if routing is not None else None
            mix = _try(out, "mixing matrix", lambda: mixing_from_run(run, chunk_tokens, weights))
            if mix is not None:
                t.update(mixing_tables(mix))
        else:
            out.notes.append("mixing matrix: hyper runs do not record the mix/post taps; use "
                             "analyses.mixing.mixing_from_model")
    signal_names = [name for name in reducers if name.startswith("signal:")]
    profile = _try(out, "signal", lambda: signal_frame(run, {n[len("signal:"):]: result(n) for n in signal_names})
                   if "signal" not in unmade else result("signal"))
    if profile is not None:
        t["signal"] = profile
        t["signal_growth"] = signal_growth(profile)
        bounds = block_bounds_of(run)
        if bounds:
            t["block_resets"] = pd.concat([block_resets(profile, bounds, q) for q in ("input_rms", "output_rms")
                                           if (profile["quantity"] == q).any()], ignore_index=True)
    grad_rms = (lambda: signal_frame(run, {"grad_rms": result("grad_rms")})) if "grad_rms" in run.captured else None
    grads = _try(out, "gradients", lambda: gradient_profile(run, chunk_tokens, grad_rms() if grad_rms else None))
    if grads is not None:
        t["gradients"] = grads
        t["gradient_uniformity"] = gradient_uniformity(grads)

    def confidence():
        if groups is None:  # grouped_sums names the reason the unit cannot be used
            return grouped_sums(run, unit, k, chunk_tokens=chunk_tokens, routing=routing)
        by_routing = result("routing") if "routing" in reducers or not isinstance(unmade.get("routing"),
                                                                                  AnalysisError) else None
        return grouped_sums_of(run, groups, by_routing, result("rms"))

    out.sums = _try(out, "confidence intervals", confidence)
    if not run.grad_norms.empty:
        out.param_sums = _try(out, "parameter-gradient intervals", lambda: param_grad_sums(run))
    if causal and mixer_kind(run).causal_check:
        table = _try(out, "causal check", lambda: causal(run, causal_tokens))
        if table is not None and len(table):
            t["causal"] = table
            t["causal_summary"] = causal_summary(table)
    return out


def analyze(run, baseline=None, k: float | None = None, unit: str = "auto", causal: CausalCheck | None = None,
            causal_tokens: int = 1024, chunk_tokens: int | None = None, n_resamples: int = 1000) -> Analysis:
    """Analyse `run` (and `baseline`, compared against it); see the module docstring. k: the long-range window
    (routing.py); unit: the bootstrap groups (comparison.py); causal: the ablation check, causal(run, causal_tokens)
    -> table (depthscope.causal_check.causal_from_run loads the run's checkpoint; None: no check);
    n_resamples: bootstrap resamples per CI."""
    from .comparison import compare_table, estimate, param_grad_statistics, statistics
    from .signal import signal_vs_baseline

    main = analyze_one(run, k, unit, causal, causal_tokens, chunk_tokens)
    runs = [main]
    if baseline is not None:
        main.baseline = analyze_one(baseline, k, unit, causal, causal_tokens, chunk_tokens)
        runs.append(main.baseline)
    rows = []
    for a in runs:
        for sums, table in ((a.sums, statistics), (a.param_sums, param_grad_statistics)):
            if sums is not None:
                stats = table(sums)  # built once; estimate() shares one set of resampled sums across names
                names = [n for n in stats if n in REPORTED]
                rows += [{"run": a.name, **estimate(sums, n, n_resamples=n_resamples, table=stats)} for n in names]
    if baseline is not None:
        base = main.baseline
        parts = []
        for sa, sb, table in ((main.sums, base.sums, statistics), (main.param_sums, base.param_sums,
                                                                    param_grad_statistics)):
            if sa is not None and sb is not None:
                names = [n for n in table(sa) if n in REPORTED and n in table(sb)]
                parts.append(compare_table(sa, sb, names, n_resamples=n_resamples))
        if parts:
            main.tables["compare"] = pd.concat(parts, ignore_index=True)
        if "signal" in main.tables and "signal" in base.tables:
            main.tables["signal_vs_baseline"] = signal_vs_baseline(main.tables["signal"], base.tables["signal"])
        for name, frame in base.tables.items():
            main.tables[f"baseline_{name}"] = frame
    if rows:
        main.tables["estimates"] = pd.DataFrame(rows)
    return main


def write(analysis: Analysis, out: str | Path) -> list[Path]:
    """Write every table as <name>.parquet and <name>.csv, and summary.md, into `out`; returns the paths."""
    from .report import summary_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in analysis.tables.items():
        for suffix, save in ((".parquet", lambda f, p: f.to_parquet(p, index=False)),
                             (".csv", lambda f, p: f.to_csv(p, index=False))):
            path = out / f"{name}{suffix}"
            save(frame, path)
            written.append(path)
    path = out / "summary.md"
    path.write_text(summary_markdown(analysis), encoding="utf-8")
    written.append(path)
    return written
