"""Gradients: per-sublayer gradient norms against depth for the run and its baseline, with the uniformity
numbers; and uniformity across the checkpoints of a training."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import views
from ..components import GRAPH_CONFIG, Page, cid, control, export_bar, guard, register_export, run_pickers
from ..figures import empty_figure


def layout(cat, params):
    return html.Div([
        html.Div(run_pickers(cat, params, baseline=True, others=True), className="controls"),
        html.Div([control("Gradient", dcc.RadioItems(
            id=cid("grad"), options=[{"label": "parameter-gradient norm per step", "value": "param"},
                                     {"label": "activation gradient dLoss/dh per token", "value": "activation"}],
            value=params.get("grad") or "param", inline=True))], className="controls"),
        html.Div(id="gradients-msg"),
        dcc.Loading(dcc.Graph(id="gradients-graph", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                    type="dot", delay_show=400),
        html.P("Uniformity: coefficient of variation (CV) and max/min ratio of the per-sublayer means.",
               className="note"),
        dcc.Graph(id="gradients-steps", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
        export_bar("gradients", [("gradients", "gradients vs depth"), ("grad_steps", "uniformity over steps")]),
        dcc.Interval(id="gradients-poll", interval=1000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("gradients-graph", "figure"), Output("gradients-steps", "figure"),
                  Output("gradients-msg", "children"), Output("gradients-poll", "disabled"),
                  Input(cid("run"), "value"), Input(cid("baseline"), "value"), Input(cid("others"), "value"),
                  Input(cid("grad"), "value"), Input("gradients-poll", "n_intervals"))
    @guard(2, "Gradients")
    def draw(run, baseline, others, grad, _):
        p = {"run": run, "baseline": baseline, "others": ",".join(others or []), "grad": grad}
        return views.gradients(cat, p), views.grad_steps(cat, p), "", True

    register_export(app, cat, "gradients")


PAGE = Page("/gradients", "Gradients", "Gradient magnitude against depth", layout, register)
