"""Tokens: a window of text coloured by a per-token statistic; clicking a token shows its own heatmap and norm
profile; a token x sublayer heatmap of the statistic over the start of the window."""
from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from .. import views
from ..components import (GRAPH_CONFIG, Page, cid, control, export_bar, guard, number_control, register_export,
                          run_pickers, sid)
from ..data import RMS_NAMES, TOKEN_STATS
from ..figures import empty_figure
from ..figures.style import STAT_NAMES
from ..params import parse

STAT_OPTIONS = [{"label": STAT_NAMES.get(s, s), "value": s} for s in TOKEN_STATS + RMS_NAMES]


def layout(cat, params):
    slots, options, stat = [], STAT_OPTIONS, params.get("stat")
    if params.get("run"):
        try:
            data = cat.data(params["run"], wait=0.0)
            run = data.run
            slots = [l for l, r in zip(run.sublayer_labels, run.source_labels) if r]
            start, stop = views.window(params, run.n_tokens)
            kinds = data.stat_kinds(start, stop, views.slot_of(data, params), parse(params, "k"))
            options = [dict(o, disabled=True, label=o["label"] + " (not defined for this run)")
                       if kinds.get(o["value"]) == "undefined" or (o["value"] in RMS_NAMES and o["value"] not in run.arrays)
                       else o for o in STAT_OPTIONS]
            stat = views.token_stat(data, params)  # the run's default when none is chosen
        except Exception:  # the view says what is wrong; the controls still show
            pass
    return html.Div([
        html.Div(run_pickers(cat, params, baseline=False), className="controls"),
        html.Div([
            control("Statistic", dcc.Dropdown(id=cid("stat"), options=options, value=stat or params.get("stat"),
                                              clearable=False), "300px"),
            control("At sublayer", dcc.Dropdown(id=cid("slot"), options=slots, value=params.get("slot") or None,
                                                placeholder="middle"), "140px"),
            number_control("wstart", params, default=0),
            number_control("wlen", params, default=512),
            number_control("k", params, placeholder="default"),
        ], className="controls"),
        html.Div(id="tokens-msg"),
        dcc.Store(id=sid("token"), data=params.get("token") or None),
        dcc.Loading(dcc.Graph(id="tokens-text", config=GRAPH_CONFIG, figure=empty_figure("Loading…")), type="dot",
                    delay_show=400),
        html.Div([
            html.Div(dcc.Graph(id="tokens-routing", config=GRAPH_CONFIG,
                               figure=empty_figure("Click a token in the text.")), className="half"),
            html.Div(dcc.Graph(id="tokens-norms", config=GRAPH_CONFIG,
                               figure=empty_figure("Click a token in the text.")), className="half"),
        ], className="row"),
        dcc.Graph(id="tokens-heatmap", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
        export_bar("tokens", [("tokens", "coloured text"), ("token_heatmap", "token x sublayer heatmap"),
                              ("token_routing", "clicked token's routing"), ("token_norms", "clicked token's norms")]),
        dcc.Interval(id="tokens-poll", interval=1000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("tokens-text", "figure"), Output("tokens-heatmap", "figure"), Output("tokens-msg", "children"),
                  Output("tokens-poll", "disabled"),
                  Input(cid("run"), "value"), Input(cid("stat"), "value"), Input(cid("slot"), "value"),
                  Input(cid("wstart"), "value"), Input(cid("wlen"), "value"), Input(cid("k"), "value"),
                  Input("tokens-poll", "n_intervals"))
    @guard(2, "Tokens")
    def text(run, stat, slot, wstart, wlen, k, _):
        p = {"run": run, "stat": stat, "slot": slot, "wstart": wstart, "wlen": wlen, "k": k}
        return views.token_text(cat, p), views.token_heatmap(cat, p), "", True

    @app.callback(Output(sid("token"), "data"), Input("tokens-text", "clickData"), Input("tokens-heatmap", "clickData"),
                  prevent_initial_call=True)
    def click(a, b):
        data = a if dash.ctx.triggered_id == "tokens-text" else b
        try:
            token = int(data["points"][0]["customdata"])
        except (TypeError, KeyError, IndexError, ValueError):
            return dash.no_update
        return str(token) if token >= 0 else dash.no_update

    @app.callback(Output("tokens-routing", "figure"), Output("tokens-norms", "figure"),
                  Input(sid("token"), "data"), Input(cid("run"), "value"))
    def token(token, run):
        @guard(2, "Token")
        def inner():
            p = {"run": run, "token": token}
            return views.token_routing(cat, p), views.token_norms(cat, p), "", True
        a, b, _, _ = inner()
        return a, b

    register_export(app, cat, "tokens")


PAGE = Page("/tokens", "Tokens", "Routing token by token", layout, register)
