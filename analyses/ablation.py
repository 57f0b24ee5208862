"""Per-source ablation table for the dashboard: `source_table(table)` keeps, of a causal check run with one
family per single source (causal.causal_ablation(..., each=True)), the per-source rows: columns sublayer,
sublayer_label, kind, source_label, mass (= mean_share in the clean pass), delta_loss, ranks. The check on a
run's own checkpoint and text is a workflow: depthscope.causal_check.source_ablation."""
from __future__ import annotations

import pandas as pd


def source_table(table: pd.DataFrame) -> pd.DataFrame:
    table = table[table["family"].str.startswith("source:")].copy()
    table["source_label"] = table["family"].str.slice(len("source:"))
    table["mean_share"] = table["mass"]
    return table.reset_index(drop=True)
