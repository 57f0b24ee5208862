"""Statistics: routing statistics of depthscope.analyses (tables and plots: jump distances, long-range mass
per sublayer, sinks) and the causal source-ablation view beside routing mass."""
from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from .. import views
from ..components import GRAPH_CONFIG, Page, cid, export_bar, guard, number_control, register_export, run_pickers
from ..figures import empty_figure

TABLE_COLUMNS = ("sublayer_label", "n_sources", "locality", "long_range", "embedding", "norm_entropy",
                 "eff_sources", "jump_rate", "top_embedding_rate", "usual_source", "spread")


ABLATION_NOTE = ("The causal check reloads the run's checkpoint and runs the model once per source with that "
                 "source removed (a minute or more on a CPU), so it runs only on request.")


def table(frame, columns, id_=None):
    cols = [c for c in columns if c in frame]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    ident = {"id": id_} if id_ else {}  # dash >= 4.4 rejects id=None
    return html.Table([html.Thead(html.Tr([html.Th(c.replace("_", " ")) for c in cols])),
                       html.Tbody([html.Tr([html.Td(fmt(r[c])) for c in cols]) for _, r in frame.iterrows()])],
                      className="stats-table", **ident)


def layout(cat, params):
    return html.Div([
        html.Div(run_pickers(cat, params, baseline=False) + [
            number_control("k", params, placeholder="default")], className="controls"),
        html.Div(id="statistics-msg"),
        html.Div(id="statistics-table"),
        html.Div([html.Div(dcc.Graph(id="statistics-long", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half"),
                  html.Div(dcc.Graph(id="statistics-jumps", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half")], className="row"),
        html.Div([html.Div(dcc.Graph(id="statistics-sinks", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half"),
                  html.Div([html.Button("Run the causal ablation check", id="statistics-ablation-btn",
                                        className="button"),
                            html.Span(ABLATION_NOTE, className="note"),
                            dcc.Graph(id="statistics-ablation", config=GRAPH_CONFIG,
                                      figure=empty_figure(ABLATION_NOTE, "Causal source ablation"))],
                           className="half")], className="row"),
        export_bar("statistics", [("long_range", "long-range mass per sublayer"), ("jumps", "jump distances"),
                                  ("sinks", "depth sinks"), ("ablation", "source ablation")]),
        dcc.Interval(id="statistics-poll", interval=1000, disabled=True),
        dcc.Interval(id="statistics-ablation-poll", interval=2000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("statistics-long", "figure"), Output("statistics-jumps", "figure"),
                  Output("statistics-sinks", "figure"),
                  Output("statistics-msg", "children"), Output("statistics-poll", "disabled"),
                  Output("statistics-table", "children"),
                  Input(cid("run"), "value"), Input(cid("k"), "value"), Input("statistics-poll", "n_intervals"))
    def draw(run, k, _):
        @guard(3, "Routing statistics")
        def inner():
            p = {"run": run, "k": k}
            r = views.routing_stats(cat, p)
            note = html.P(f"{r.tokens:,} tokens; long-range window k = {r.k:g} {r.unit}; statistics from "
                          "depthscope.analyses.routing.", className="note")
            body = [note, table(r.sublayers, TABLE_COLUMNS, "statistics-sublayers")]
            sinks = r.sources[r.sources["is_sink"]]
            if len(sinks):
                body += [html.H3("Depth sinks", className="sub"),
                         table(sinks, ("sublayer_label", "source_label", "mean_share", "std_share", "top_rate"))]
            return views.long_range(cat, p), views.jumps(cat, p), views.sinks(cat, p), body, True
        out = inner()
        if len(out) == 5:  # the guard's error path: figures, message, poll
            return (*out[:3], out[3], out[4], "")
        return (*out[:3], "", out[4], out[3])

    @app.callback(Output("statistics-ablation", "figure"), Output("statistics-ablation-poll", "disabled"),
                  Input("statistics-ablation-btn", "n_clicks"), Input(cid("run"), "value"),
                  Input("statistics-ablation-poll", "n_intervals"))
    def ablation(n_clicks, run, _):
        if not n_clicks or dash.ctx.triggered_id == cid("run"):
            return empty_figure(ABLATION_NOTE, "Causal source ablation"), True

        @guard(1, "Causal source ablation")
        def inner():
            return views.ablation(cat, {"run": run}), "", True
        fig, _msg, poll = inner()
        return fig, poll

    register_export(app, cat, "statistics")


PAGE = Page("/statistics", "Statistics", "Locality, long-range jumps and sinks", layout, register)
