"""Routing: the token-averaged weight heatmap with filters; clicking a cell shows its distribution over tokens
and the tokens that put the most weight there."""
from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html

from .. import views
from ..components import (GRAPH_CONFIG, Page, cid, control, export_bar, guard, message, number_control,
                          register_export, run_pickers, sid)
from ..figures import empty_figure


def layout(cat, params):
    return html.Div([
        # no baseline here: the Compare page draws a run against its baseline
        html.Div(run_pickers(cat, params, baseline=False), className="controls"),
        html.Div([
            number_control("start", params, placeholder="0"),
            number_control("stop", params, placeholder="end"),
            number_control("doc", params, placeholder="all"),
            control("Token text (regex)", dcc.Input(id=cid("regex"), type="text", value=params.get("regex") or "",
                                                    debounce=True, placeholder="e.g. [A-Z] or \\s")),
        ], className="controls"),
        html.Div(id="routing-msg"),
        dcc.Loading(dcc.Graph(id="routing-graph", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                    type="dot", delay_show=400),
        dcc.Store(id=sid("cell"), data=params.get("cell") or None),
        html.Div([
            html.Div(dcc.Graph(id="routing-cell-graph", config=GRAPH_CONFIG,
                               figure=empty_figure("Click a cell of the heatmap.")), className="half"),
            html.Div([html.H3("Tokens putting the most weight there", className="sub"),
                      html.Div(id="routing-cell-top")], className="half"),
        ], className="row"),
        export_bar("routing", [("routing", "routing heatmap"), ("cell", "cell distribution")]),
        dcc.Interval(id="routing-poll", interval=1000, disabled=True),
    ])


def _params(run, baseline, start, stop, doc, regex, cell=None):
    return {"run": run, "baseline": baseline, "start": start, "stop": stop, "doc": doc, "regex": regex, "cell": cell}


def cell_of_click(cat, run, click_data) -> str | None:
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
        r = cat.open(run)
        slot = r.sublayer_labels.index(point["y"])
        return f"{slot},{r.source_labels[slot].index(point['x'])}"
    except Exception:
        return None


def register(app, cat):
    @app.callback(Output("routing-graph", "figure"), Output("routing-msg", "children"),
                  Output("routing-poll", "disabled"),
                  Input(cid("run"), "value"), Input(cid("start"), "value"),
                  Input(cid("stop"), "value"), Input(cid("doc"), "value"), Input(cid("regex"), "value"),
                  Input("routing-poll", "n_intervals"))
    @guard(1, "Depth attention")
    def heatmap(run, start, stop, doc, regex, _):
        fig, result = views.routing(cat, _params(run, None, start, stop, doc, regex))
        note = message(result.note, "note") if result.sampled else ""
        return fig, note, True

    @app.callback(Output(sid("cell"), "data"), Input("routing-graph", "clickData"), State(cid("run"), "value"),
                  prevent_initial_call=True)
    def click(click_data, run):
        return cell_of_click(cat, run, click_data) or dash.no_update

    @app.callback(Output("routing-cell-graph", "figure"), Output("routing-cell-top", "children"),
                  Input(sid("cell"), "data"), Input(cid("run"), "value"), Input(cid("start"), "value"),
                  Input(cid("stop"), "value"), Input(cid("doc"), "value"), Input(cid("regex"), "value"),
                  Input("routing-poll", "n_intervals"))
    def cell(cell_value, run, start, stop, doc, regex, _):
        @guard(1, "Weight over tokens")
        def inner():
            fig, res, label = views.cell(cat, _params(run, None, start, stop, doc, regex, cell_value))
            if fig is None:
                return empty_figure("Click a cell of the heatmap."), "", True
            top = res.top
            table = html.Table([
                html.Thead(html.Tr([html.Th(h) for h in ("token", "weight", "document", "position", "context")])),
                html.Tbody([html.Tr([html.Td(int(r["index"])), html.Td(f"{r['weight']:.4f}"),
                                     html.Td(int(r["document"]) if "document" in r else ""),
                                     html.Td(int(r["position"]) if "position" in r else ""),
                                     html.Td(html.Code(r.get("context", "")))]) for _, r in top.iterrows()]),
            ], className="top-table", id="routing-top-table")
            return fig, [html.Div(f"{label}" + (f" — {res.note}" if res.note else ""), className="note"), table], True
        fig, top, _ = inner()
        return fig, top

    register_export(app, cat, "routing")


PAGE = Page("/routing", "Routing", "Depth attention, averaged over tokens", layout, register)
