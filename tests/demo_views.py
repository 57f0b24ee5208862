"""The dashboard views of the demo bundle as a person opens them: each run kind against the residual baseline, with
a filter, a clicked cell and token (tests/dashboard/test_figure_layout.py draws them for print,
tests/workflows/parity.py keeps their figures for the parity check)."""
from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
BASELINE = "residual"
RUN_KINDS = ("block_attnres", "full_attnres", "residual", "denseformer", "mhc")
PER_RUN = {
    "routing": {"start": "0", "stop": "3000", "regex": "[a-z]"},
    "cell": {"cell": "10,1"},
    "tokens": {"wstart": "0", "wlen": "400", "stat": "long_range"},
    "token_heatmap": {"wstart": "0", "wlen": "200", "stat": "embedding"},
    "token_routing": {"token": "200"},
    "token_norms": {"token": "200"},
    "signal": {"quantity": "output_rms", "others": "full_attnres"},
    "signal_input": {"quantity": "input_rms"},
    "gradients": {"grad": "param", "others": "full_attnres"},
    "gradients_activation": {"grad": "activation"},
    "jumps": {},
    "long_range": {},
    "sinks": {},
    "compare": {"other": "full_attnres"},
    "compare_run": {"other": "full_attnres"},
    "compare_other": {"other": "full_attnres"},
}
GLOBAL = {"grad_steps": {}, "evolution": {"step": "244"}, "evolution_stat": {"stat": "embedding"}}
VARIANTS = ("_input", "_activation", "_plain")  # a case name is a registered figure plus one of these


def view(run: str | None, case: str, extra: dict) -> tuple[str, dict]:
    """(registered figure name, URL parameters) of one case. Evolution draws the chosen run's training; mHC has
    no long-range mass (no depth distance between streams), so its token views show the embedding share."""
    params = {"run": run or "block_attnres", "baseline": BASELINE, **extra}
    if run == "mhc" and params.get("stat") == "long_range":
        params["stat"] = "embedding"
    figure = case
    for variant in VARIANTS:
        figure = figure.split(variant)[0]
    return figure, params
