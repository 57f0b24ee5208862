"""Evolution: where runs come from checkpoints of one training, a slider over training steps."""
from __future__ import annotations

from dash import dcc, html

from depthscope.models import statistic_label

from .. import views
from ..components import Choice, cid, control, message
from ..data import TOKEN_STATS
from ..panels import Page, Panel, Poll, Row, Unavailable, View
from ..params import ParamError, parse

ROUTING = Panel("evolution-routing", "evolution", export="routing at step")
STAT = Panel("evolution-stat", "evolution_stat", export="statistic over steps")
STATISTIC = Choice("stat", "Statistic", tuple({"label": statistic_label(s), "value": s}
                                              for s in TOKEN_STATS + ("jump_rate",)), "embedding", width="240px")


def training_controls(cat, params) -> list:
    """Training and statistic pickers and the step slider; a training or step in the URL that this folder does
    not hold is refused above them (and not applied)."""
    refused = ""
    try:
        training, infos, trainings = views.evolution_runs(cat, params)
    except ParamError as err:
        refused = message(f"Not applied: {err}", "note")
        params = {k: v for k, v in params.items() if k not in (err.key, "step")}
        training, infos, trainings = views.evolution_runs(cat, params)
    if not infos:
        raise Unavailable(message("No training here left several recorded checkpoints. Train with --save-every N "
                                  "and record each step_* checkpoint into this runs folder to follow routing over "
                                  "training.", "note"))
    steps = [i.step for i in infos]
    return [refused,
            html.Div([control("Training", dcc.Dropdown(id=cid("training"), options=[
                {"label": views.training_label(t, v), "value": t} for t, v in trainings.items()],
                value=training, clearable=False), "520px"), STATISTIC(cat, params)], className="controls"),
            html.Div(control("Training step", dcc.Slider(id=cid("step"), min=min(steps),
                                                         max=max(steps), step=None, marks={s: str(s) for s in steps},
                                                         value=parse(params, "step", steps[-1]))),
                     className="slider")]


PAGE = Page(
    "/evolution", "Evolution", "Routing over training",
    controls=(training_controls,),
    body=(Row(ROUTING, STAT),),
    views=(View("Evolution", (ROUTING, STAT), ("training", "step", "stat"), message="evolution-msg",
                poll=Poll("evolution-poll")),),
)
