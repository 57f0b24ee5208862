"""Compare: two runs side by side on one shared colour scale, and their difference."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import views
from ..components import GRAPH_CONFIG, Page, cid, export_bar, guard, register_export, run_pickers
from ..figures import empty_figure


def layout(cat, params):
    return html.Div([
        html.Div(run_pickers(cat, params, baseline=False, other_key="other"), className="controls"),
        html.Div(id="compare-msg"),
        html.Div([html.Div(dcc.Graph(id="compare-a", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half"),
                  html.Div(dcc.Graph(id="compare-b", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half")], className="row"),
        dcc.Graph(id="compare-diff", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
        export_bar("compare", [("compare", "difference"), ("compare_run", "run"), ("compare_other", "other run")]),
        dcc.Interval(id="compare-poll", interval=1000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("compare-a", "figure"), Output("compare-b", "figure"), Output("compare-diff", "figure"),
                  Output("compare-msg", "children"), Output("compare-poll", "disabled"),
                  Input(cid("run"), "value"), Input(cid("other"), "value"), Input("compare-poll", "n_intervals"))
    @guard(3, "Compare")
    def draw(run, other, _):
        a, b, d = views.compare(cat, {"run": run, "other": other})
        return a, b, d, "", True

    register_export(app, cat, "compare")


PAGE = Page("/compare", "Compare", "Two runs on one colour scale", layout, register)
