"""Analyses: pure functions from a recorded run to tidy pandas tables (long format).

    routing_stats(run)            routing per sublayer / source / jump distance / kind   (routing.py)
    token_table(run, a, b)        per (token, sublayer) drill-down                        (per_token.py)
    signal_profile(run)           RMS against depth; signal_growth, block_resets          (signal.py)
    gradient_profile(run)         gradient magnitudes; gradient_uniformity                 (gradients.py)
    mixing_from_run / _model      effective mixing matrix M and its effective rank         (mixing.py)
    causal_ablation(model, ...)   loss change when sources are masked                      (causal.py)
    grouped_sums, estimate, compare   bootstrap CIs and run-vs-run differences (scipy)     (comparison.py)
    analyze(run, baseline), write(analysis, out)   everything `depthscope analyze` writes  (analysis.py)
    summary_markdown(analysis)    the Markdown summary with the paper's findings           (report.py)
    scan(run, reducers)           one read of a run feeding any number of reducers          (scanner.py)
    Moments, percentile           RMS moments and percentiles from a log histogram          (log_histogram.py)

Source geometry (distances in sublayers, or blocks for Block AttnRes) is in sources.py. Inputs are run
directories, probe.Run objects, or MemoryRun (runs.py) for arrays in memory. Bad input raises AnalysisError.
"""
from __future__ import annotations

from depthscope.models import public_names

# name -> the module of this package that defines it; imported on first use, so that importing the package is
# cheap and pulls in no heavy dependency its caller does not use
_PUBLIC = {
    "mixing_tables": "mixing",
    "compare": "comparison",
    "estimate": "comparison",
    "grouped_sums": "comparison",
    "gradient_uniformity": "gradients",
    "gradient_profile": "gradients",
    "block_resets": "signal",
    "signal_growth": "signal",
    "signal_profile": "signal",
    "source_table": "ablation",
    "analyze": "analysis",
    "write": "analysis",
    "causal_ablation": "causal",
    "seed_interval": "comparison",
    "AnalysisError": "errors",
    "NaNWeightError": "errors",
    "param_grad_profile": "gradients",
    "uniformity": "gradients",
    "DASHBOARD_BINS": "log_histogram",
    "LogBins": "log_histogram",
    "Moments": "log_histogram",
    "MomentsReducer": "log_histogram",
    "SIGNAL_BINS": "log_histogram",
    "percentile": "log_histogram",
    "mixing_from_model": "mixing",
    "mixing_from_run": "mixing",
    "routing_kernel": "per_token",
    "token_stats": "per_token",
    "token_table": "per_token",
    "token_weights": "per_token",
    "CLAIMS": "report",
    "summary_markdown": "report",
    "verdict": "report",
    "Routing": "routing",
    "RoutingAccumulator": "routing",
    "routing_stats": "routing",
    "MemoryRun": "runs",
    "as_run": "runs",
    "run_name": "runs",
    "MAX_WORKERS": "scanner",
    "Reducer": "scanner",
    "ScanResults": "scanner",
    "cores": "scanner",
    "default_workers": "scanner",
    "scan": "scanner",
}

__getattr__, __dir__, __all__ = public_names(__name__, _PUBLIC)
