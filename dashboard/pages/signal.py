"""Signal: RMS of hidden states and outputs against depth for the run, its baseline and others (log scale,
percentile bands over tokens) and the ratio to the baseline."""
from __future__ import annotations

from dash import html

from .. import views
from ..components import Choice, Runs, message
from ..data import RMS_NAMES
from ..figures.style import QUANTITY_NAMES
from ..panels import Drawn, Page, Panel, Poll, View

GRAPH = Panel("signal-graph", "signal", export="signal vs depth", loading=True)


def draw(cat, p) -> Drawn:
    """The figure, and a note naming the runs that did not record the quantity."""
    fig, missing = views.signal(cat, p), views.signal_missing(cat, p)
    quantity = p["quantity"]
    note = message(f"{QUANTITY_NAMES.get(quantity, quantity)} was not recorded by {', '.join(missing)}: "
                   "not drawn for " + ("it." if len(missing) == 1 else "them."), "note") if missing else ""
    return Drawn((fig,), note)


PAGE = Page(
    "/signal", "Signal", "Signal growth against depth",
    controls=([Runs(others=True)],
              [Choice("quantity", "Quantity", tuple({"label": QUANTITY_NAMES[q], "value": q} for q in RMS_NAMES),
                      "output_rms", radio=True)]),
    body=(GRAPH, html.P("Median over tokens (line), 25-75 % and 5-95 % of tokens (bands); percentiles from "
                        "0.01-decade bins (within about 2 %). Dashed: the baseline.", className="note")),
    views=(View("Signal against depth", (GRAPH,), ("run", "baseline", "others", "quantity"), draw=draw,
                message="signal-msg", poll=Poll("signal-poll")),),
)
