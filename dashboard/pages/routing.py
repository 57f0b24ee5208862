"""Routing: the token-averaged weight heatmap with filters; clicking a cell shows its distribution over tokens
and the tokens that put the most weight there."""
from __future__ import annotations

from dash import html

from .. import views
from ..components import Number, Runs, Text, message
from ..panels import Drawn, Page, Panel, Poll, Row, Selection, View

HEATMAP = Panel("routing-graph", "routing", export="routing heatmap", loading=True)
CELL = Panel("routing-cell-graph", "cell", export="cell distribution", placeholder="Click a cell of the heatmap.")
FILTER = ("run", "start", "stop", "doc", "regex")


def draw_heatmap(cat, p) -> Drawn:
    """The heatmap, and a note when it was drawn from a sample of the tokens."""
    fig, result = views.routing(cat, p)
    return Drawn((fig,), message(result.note, "note") if result.sampled else "")


def draw_cell(cat, p) -> Drawn:
    """The clicked cell's weight over tokens; its label and the tokens putting the most weight there."""
    fig, res, label = views.cell(cat, p)
    if fig is None:
        return Drawn((CELL.empty(),))
    rows = [html.Tr([html.Td(int(r["index"])), html.Td(f"{r['weight']:.4f}"),
                     html.Td(int(r["document"]) if "document" in r else ""),
                     html.Td(int(r["position"]) if "position" in r else ""),
                     html.Td(html.Code(r.get("context", "")))]) for _, r in res.top.iterrows()]
    table = html.Table([html.Thead(html.Tr([html.Th(h) for h in ("token", "weight", "document", "position",
                                                                 "context")])), html.Tbody(rows)],
                       className="top-table", id="routing-top-table")
    return Drawn((fig,), [html.Div(f"{label}" + (f" — {res.note}" if res.note else ""), className="note"), table])


def cell_of_click(cat, params, click_data) -> str | None:
    """'slot,source' of a clicked heatmap cell: from its customdata, else from its (source, consumer) labels."""
    try:
        point = click_data["points"][0]
    except (TypeError, KeyError, IndexError):
        return None
    custom = point.get("customdata")
    if isinstance(custom, (list, tuple)) and len(custom) >= 2 and custom[0] is not None:
        try:
            return f"{int(custom[0])},{int(custom[1])}"
        except (TypeError, ValueError):
            pass
    try:
        r = cat.open(params["run"])
        slot = r.sublayer_labels.index(point["y"])
        return f"{slot},{r.source_labels[slot].index(point['x'])}"
    except Exception:
        return None


PAGE = Page(
    "/routing", "Routing", "Depth attention, averaged over tokens",
    # no baseline here: the Compare page draws a run against its baseline
    controls=([Runs(baseline=False)],
              [Number("start", placeholder="0"), Number("stop", placeholder="end"), Number("doc", placeholder="all"),
               Text("regex", "Token text (regex)", placeholder="e.g. [A-Z] or \\s")]),
    body=(HEATMAP, Row(CELL, [html.H3("Tokens putting the most weight there", className="sub"),
                              html.Div(id="routing-cell-top")])),
    views=(View("Depth attention", (HEATMAP,), FILTER, draw=draw_heatmap, message="routing-msg",
                poll=Poll("routing-poll")),
           View("Weight over tokens", (CELL,), FILTER, ("cell",), draw=draw_cell, message="routing-cell-top",
                poll=Poll("routing-poll", owner=False))),
    selections=(Selection("cell", (HEATMAP,), cell_of_click, ("run",)),),
)
