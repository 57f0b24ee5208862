"""Statistics: the routing statistics of depthscope.analyses (tables and plots: jump distances, long-range mass
per sublayer, sinks) and the causal source-ablation view beside routing mass."""
from __future__ import annotations

from dash import html

from .. import views
from ..components import Number, Runs
from ..panels import Drawn, Page, Panel, Poll, Row, View

TABLE_COLUMNS = ("sublayer_label", "n_sources", "locality", "long_range", "embedding", "norm_entropy",
                 "eff_sources", "jump_rate", "top_embedding_rate", "usual_source", "spread")
ABLATION_NOTE = ("The causal check reloads the run's checkpoint and runs the model once per source with that "
                 "source removed (a minute or more on a CPU), so it runs only on request.")

LONG = Panel("statistics-long", "long_range", export="long-range mass per sublayer")
JUMPS = Panel("statistics-jumps", "jumps", export="jump distances")
SINKS = Panel("statistics-sinks", "sinks", export="depth sinks")
ABLATION = Panel("statistics-ablation", "ablation", export="source ablation", placeholder=ABLATION_NOTE,
                 placeholder_title="Causal source ablation")


def table(frame, columns, id_=None):
    cols = [c for c in columns if c in frame]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    ident = {"id": id_} if id_ else {}  # dash >= 4.4 rejects id=None
    return html.Table([html.Thead(html.Tr([html.Th(c.replace("_", " ")) for c in cols])),
                       html.Tbody([html.Tr([html.Td(fmt(r[c])) for c in cols]) for _, r in frame.iterrows()])],
                      className="stats-table", **ident)


def draw(cat, p) -> Drawn:
    """The three figures, and (as the view's message) the per-sublayer table with the depth sinks below it."""
    r = views.routing_stats(cat, p)
    note = html.P(f"{r.tokens:,} tokens; long-range window k = {r.k:g} {r.unit}; statistics from "
                  "depthscope.analyses.routing.", className="note")
    body = [note, table(r.sublayers, TABLE_COLUMNS, "statistics-sublayers")]
    sinks = r.sources[r.sources["is_sink"]]
    if len(sinks):
        body += [html.H3("Depth sinks", className="sub"),
                 table(sinks, ("sublayer_label", "source_label", "mean_share", "std_share", "top_rate"))]
    return Drawn((views.long_range(cat, p), views.jumps(cat, p), views.sinks(cat, p)), body)


PAGE = Page(
    "/statistics", "Statistics", "Locality, long-range jumps and sinks",
    controls=([Runs(baseline=False), Number("k", placeholder="default")],),
    body=(Row(LONG, JUMPS),
          Row(SINKS, [html.Button("Run the causal ablation check", id="statistics-ablation-btn", className="button"),
                      html.Span(ABLATION_NOTE, className="note"), ABLATION])),
    views=(View("Routing statistics", (LONG, JUMPS, SINKS), ("run", "k"), draw=draw, message="statistics-msg",
                poll=Poll("statistics-poll")),
           View("Causal source ablation", (ABLATION,), ("run",), poll=Poll("statistics-ablation-poll", 2000),
                on_request="statistics-ablation-btn")),
)
