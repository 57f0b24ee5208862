"""The one vocabulary of depthscope: the names every layer uses for sublayers, sources, tokens, statistics and
mixer kinds, made and parsed here only. Importable without torch (plain Python and numpy), so that the analyses
and the dashboard can read a run on a machine without it.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------------- sublayers and sources
# (labels of sublayers and of the sources a sublayer draws on: made and parsed here)


# ------------------------------------------------------------------------------------------------------- mixer kinds
# (what a mixer kind allows: non-negative weights, the unit of distance, the causal check; declared once per kind)


# ------------------------------------------------------------------------------------------------------- token labels


# ------------------------------------------------------------------------------------------------------- statistics
# (the names of the routing statistics, per (token, sublayer) and aggregated)
# Per (token, sublayer) routing statistics (definitions: depthscope.analyses.routing), in the order tables list
# them; the aggregate tables report their means over tokens under the same names.
TOKEN_STATISTICS = ("locality", "long_range", "embedding", "entropy", "norm_entropy", "eff_sources")
# The ones the dashboard's token views offer, in the order offered (its default: the first that varies);
# entropy is offered as its normalised form.
SHOWN_TOKEN_STATISTICS = ("long_range", "embedding", "norm_entropy", "locality", "eff_sources")
