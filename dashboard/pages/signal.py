"""Signal: RMS of hidden states and outputs against depth for the run, its baseline and others (log scale,
percentile bands over tokens) and the ratio to the baseline."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import views
from ..components import GRAPH_CONFIG, Page, cid, control, export_bar, guard, message, register_export, run_pickers
from ..data import RMS_NAMES
from ..figures import empty_figure
from ..figures.style import QUANTITY_NAMES


def layout(cat, params):
    return html.Div([
        html.Div(run_pickers(cat, params, baseline=True, others=True), className="controls"),
        html.Div([control("Quantity", dcc.RadioItems(
            id=cid("quantity"), options=[{"label": QUANTITY_NAMES[q], "value": q} for q in RMS_NAMES],
            value=params.get("quantity") or "output_rms", inline=True))], className="controls"),
        html.Div(id="signal-msg"),
        dcc.Loading(dcc.Graph(id="signal-graph", config=GRAPH_CONFIG, figure=empty_figure("Loading…")), type="dot",
                    delay_show=400),
        html.P("Median over tokens (line), 25-75 % and 5-95 % of tokens (bands); percentiles from 0.01-decade "
               "bins (within about 2 %). Dashed: the baseline.", className="note"),
        export_bar("signal", [("signal", "signal vs depth")]),
        dcc.Interval(id="signal-poll", interval=1000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("signal-graph", "figure"), Output("signal-msg", "children"), Output("signal-poll", "disabled"),
                  Input(cid("run"), "value"), Input(cid("baseline"), "value"), Input(cid("others"), "value"),
                  Input(cid("quantity"), "value"), Input("signal-poll", "n_intervals"))
    @guard(1, "Signal against depth")
    def draw(run, baseline, others, quantity, _):
        p = {"run": run, "baseline": baseline, "others": ",".join(others or []), "quantity": quantity}
        fig, missing = views.signal(cat, p), views.signal_missing(cat, p)
        note = message(f"{QUANTITY_NAMES.get(quantity, quantity)} was not recorded by {', '.join(missing)}: "
                       "not drawn for " + ("it." if len(missing) == 1 else "them."), "note") if missing else ""
        return fig, note, True

    register_export(app, cat, "signal")


PAGE = Page("/signal", "Signal", "Signal growth against depth", layout, register)
