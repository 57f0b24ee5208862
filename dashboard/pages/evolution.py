"""Evolution: where runs come from checkpoints of one training, a slider over training steps."""
from __future__ import annotations

from dash import Input, Output, dcc, html

from .. import views
from ..components import GRAPH_CONFIG, Page, cid, control, export_bar, guard, message, register_export
from ..data import TOKEN_STATS
from ..figures import empty_figure
from ..figures.style import STAT_NAMES
from ..params import ParamError, parse


def layout(cat, params):
    refused = ""
    try:
        training, infos, trainings = views.evolution_runs(cat, params)
    except ParamError as err:  # a bad training / step in the URL: say so, show the controls without it
        refused = message(f"Not applied: {err}", "note")
        params = {k: v for k, v in params.items() if k not in (err.key, "step")}
        training, infos, trainings = views.evolution_runs(cat, params)
    if not infos:
        return message("No training here left several recorded checkpoints. Train with --save-every N and record "
                       "each step_* checkpoint into this runs folder to follow routing over training.", "note")
    steps = [i.step for i in infos]
    step = parse(params, "step", steps[-1])
    return html.Div([
        refused,
        html.Div([
            control("Training", dcc.Dropdown(id=cid("training"), options=[
                {"label": views.training_label(t, v), "value": t} for t, v in trainings.items()],
                value=training, clearable=False), "520px"),
            control("Statistic", dcc.Dropdown(id=cid("stat"), options=[{"label": STAT_NAMES.get(s, s), "value": s}
                                                                       for s in TOKEN_STATS + ("jump_rate",)],
                                              value=params.get("stat") or "embedding", clearable=False), "240px"),
        ], className="controls"),
        html.Div(control("Training step", dcc.Slider(id=cid("step"), min=min(steps), max=max(steps), step=None,
                                                      marks={s: str(s) for s in steps}, value=step)),
                 className="slider"),
        html.Div(id="evolution-msg"),
        html.Div([html.Div(dcc.Graph(id="evolution-routing", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half"),
                  html.Div(dcc.Graph(id="evolution-stat", config=GRAPH_CONFIG, figure=empty_figure("Loading…")),
                           className="half")], className="row"),
        export_bar("evolution", [("evolution", "routing at step"), ("evolution_stat", "statistic over steps")]),
        dcc.Interval(id="evolution-poll", interval=1000, disabled=True),
    ])


def register(app, cat):
    @app.callback(Output("evolution-routing", "figure"), Output("evolution-stat", "figure"),
                  Output("evolution-msg", "children"), Output("evolution-poll", "disabled"),
                  Input(cid("training"), "value"), Input(cid("step"), "value"), Input(cid("stat"), "value"),
                  Input("evolution-poll", "n_intervals"))
    @guard(2, "Evolution")
    def draw(training, step, stat, _):
        p = {"training": training, "step": None if step is None else str(step), "stat": stat}
        return views.evolution_routing(cat, p), views.evolution_stat(cat, p), "", True

    register_export(app, cat, "evolution")


PAGE = Page("/evolution", "Evolution", "Routing over training", layout, register)
