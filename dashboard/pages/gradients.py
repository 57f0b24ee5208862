"""Gradients: per-sublayer gradient norms against depth for the run and its baseline, with the uniformity
numbers; and uniformity across the checkpoints of a training."""
from __future__ import annotations

from dash import html

from ..components import Choice, Runs
from ..panels import Page, Panel, Poll, View

GRAPH = Panel("gradients-graph", "gradients", export="gradients vs depth", loading=True)
STEPS = Panel("gradients-steps", "grad_steps", export="uniformity over steps")
KINDS = ({"label": "parameter-gradient norm per step", "value": "param"},
         {"label": "activation gradient dLoss/dh per token", "value": "activation"})

PAGE = Page(
    "/gradients", "Gradients", "Gradient magnitude against depth",
    controls=([Runs(others=True)], [Choice("grad", "Gradient", KINDS, "param", radio=True)]),
    body=(GRAPH, html.P("Uniformity: coefficient of variation (CV) and max/min ratio of the per-sublayer means.",
                        className="note"), STEPS),
    views=(View("Gradients", (GRAPH, STEPS), ("run", "baseline", "others", "grad"), message="gradients-msg",
                poll=Poll("gradients-poll")),),
)
