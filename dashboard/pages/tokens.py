"""Tokens: a window of text coloured by a per-token statistic; clicking a token shows its own heatmap and norm
profile; a token x sublayer heatmap of the statistic over the start of the window."""
from __future__ import annotations

from dash import dcc

from depthscope.models import statistic_label

from .. import views
from ..components import Number, Runs, cid, control
from ..data import RMS_NAMES, TOKEN_STATS
from ..panels import Page, Panel, Poll, Row, Selection, View
from ..params import parse

STAT_OPTIONS = [{"label": statistic_label(s), "value": s} for s in TOKEN_STATS + RMS_NAMES]
TEXT = Panel("tokens-text", "tokens", export="coloured text", loading=True)
HEATMAP = Panel("tokens-heatmap", "token_heatmap", export="token x sublayer heatmap")
ROUTING = Panel("tokens-routing", "token_routing", export="clicked token's routing",
                placeholder="Click a token in the text.")
NORMS = Panel("tokens-norms", "token_norms", export="clicked token's norms", placeholder="Click a token in the text.")


def statistic_controls(cat, params) -> list:
    """Statistic (those not defined for this run shown but disabled; the run's default when none is chosen) and
    At sublayer (the run's routed sublayers)."""
    slots, options, stat = [], STAT_OPTIONS, params.get("stat")
    if params.get("run"):
        try:
            data = cat.data(params["run"], wait=0.0)
            run = data.run
            slots = [l for l, r in zip(run.sublayer_labels, run.source_labels) if r]
            start, stop = views.window(params, run.n_tokens)
            kinds = data.stat_kinds(start, stop, views.slot_of(data, params), parse(params, "k"))
            undefined = {s for s, kind in kinds.items() if kind == "undefined"} \
                | {s for s in RMS_NAMES if s not in run.arrays}
            options = [dict(o, disabled=True, label=o["label"] + " (not defined for this run)")
                       if o["value"] in undefined else o for o in STAT_OPTIONS]
            stat = views.token_stat(data, params)  # the run's default when none is chosen
        except Exception:  # the view says what is wrong; the controls still show
            pass
    return [control("Statistic", dcc.Dropdown(id=cid("stat"), options=options, value=stat or params.get("stat"),
                                              clearable=False), "300px"),
            control("At sublayer", dcc.Dropdown(id=cid("slot"), options=slots, value=params.get("slot") or None,
                                                placeholder="middle"), "140px")]


def token_of_click(cat, params, click_data) -> str | None:
    """The clicked token's index (its customdata); None for a click on no token."""
    try:
        token = int(click_data["points"][0]["customdata"])
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return str(token) if token >= 0 else None


PAGE = Page(
    "/tokens", "Tokens", "Routing token by token",
    controls=([Runs(baseline=False)],
              [statistic_controls, Number("wstart", default=0), Number("wlen", default=512),
               Number("k", placeholder="default")]),
    body=(TEXT, Row(ROUTING, NORMS), HEATMAP),
    views=(View("Tokens", (TEXT, HEATMAP), ("run", "stat", "slot", "wstart", "wlen", "k"), message="tokens-msg",
                poll=Poll("tokens-poll")),
           View("Token", (ROUTING, NORMS), ("run",), ("token",))),
    selections=(Selection("token", (TEXT, HEATMAP), token_of_click),),
)
