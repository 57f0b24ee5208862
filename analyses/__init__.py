"""Analyses: pure functions from a recorded run to tidy pandas tables (long format).

    routing_stats(run)            routing per sublayer / source / jump distance / kind   (routing.py)
    token_table(run, a, b)        per (token, sublayer) drill-down                        (per_token.py)
    signal_profile(run)           RMS against depth; signal_growth, block_resets          (signal.py)
    gradient_profile(run)         gradient magnitudes; gradient_uniformity                 (gradients.py)
    mixing_from_run / _model      effective mixing matrix M and its effective rank         (mixing.py)
    causal_ablation(model, ...)   loss change when sources are masked                      (causal.py)
    grouped_sums, estimate, compare   bootstrap CIs and run-vs-run differences (scipy)     (compare.py)
    analyze(run, baseline), write(analysis, out)   everything `depthscope analyze` writes  (analyze.py)
    summary_markdown(analysis)    the Markdown summary with the paper's findings           (report.py)
    scan(run, reducers)           one read of a run feeding any number of reducers          (scanner.py)
    Moments, percentile           RMS moments and percentiles from a log histogram          (log_histogram.py)

Source geometry (distances in sublayers, or blocks for Block AttnRes) is in sources.py. Inputs are run
directories, probe.Run objects, or MemoryRun (runs.py) for arrays in memory. Bad input raises AnalysisError.
"""
from .errors import AnalysisError, NaNWeightError
from .gradients import param_grad_profile, uniformity
from .log_histogram import DASHBOARD_BINS, SIGNAL_BINS, LogBins, Moments, MomentsReducer, percentile
from .per_token import routing_kernel, token_stats, token_table, token_weights
from .routing import Routing, RoutingAccumulator, routing_stats
from .runs import MemoryRun, as_run
from .scanner import MAX_WORKERS, Reducer, ScanResults, cores, default_workers, scan

__all__ = ["AnalysisError", "DASHBOARD_BINS", "LogBins", "MAX_WORKERS", "SIGNAL_BINS", "MemoryRun", "Moments", "MomentsReducer", "NaNWeightError", "Reducer", "Routing",
           "RoutingAccumulator", "ScanResults", "as_run", "cores", "default_workers", "param_grad_profile", "percentile",
           "routing_kernel", "routing_stats", "scan", "token_stats", "token_table", "token_weights", "uniformity"]
