"""Per-source ablation table for the dashboard: `source_ablation(run)` = the causal check (causal.py) with one
family per single source, columns sublayer, sublayer_label, kind, source_label, mass (= mean_share in the clean
pass), delta_loss, ranks. Needs the run's checkpoint (see causal.causal_from_run)."""
from __future__ import annotations

import pandas as pd

from .causal import causal_from_run


def source_ablation(run, max_tokens: int = 512) -> pd.DataFrame:
    table = causal_from_run(run, max_tokens=max_tokens, each=True)
    table = table[table["family"].str.startswith("source:")].copy()
    table["source_label"] = table["family"].str.slice(len("source:"))
    table["mean_share"] = table["mass"]
    return table.reset_index(drop=True)
