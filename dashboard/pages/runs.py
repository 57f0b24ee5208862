"""Runs: every run in the folder with kind, config, tokens, status, date; choose a run and a baseline."""
from __future__ import annotations

import dash
from dash import ALL, Input, Output, dcc, html

from ..components import Runs, cid, make_search, message
from ..panels import Page


def runs_table(cat, params):
    rows = []
    for info in cat.list():
        link = dcc.Link(info.id, id={"type": "run-link", "run": info.id},
                        href="/routing" + make_search({"run": info.id, "baseline": params.get("baseline")}))
        status = html.Span(info.status, className=f"status status-{info.status}")
        rows.append(html.Tr([
            html.Td(link if info.ok else info.id), html.Td(info.kind), html.Td(info.config),
            html.Td(f"{info.tokens:,}" if info.ok else ""), html.Td(status),
            html.Td(info.created.replace("T", " ")[:19]),
            html.Td(info.corpus if info.ok else html.Div(info.error, className="run-error")),
        ], className="run-row" if info.ok else "run-row run-broken"))
    if not rows:
        return message(f"No runs under {cat.root} yet (record one with `depthscope record`).", "note")
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in
                                           ("run", "kind", "config", "tokens", "status", "created",
                                            "corpus / error")])),
                       html.Tbody(rows)], className="runs-table", id="runs-table")


def register(app, cat):
    @app.callback(Output("runs-choice", "children"), Input(cid("run"), "value"), Input(cid("baseline"), "value"))
    def choice(run, baseline):
        if not run:
            return "Choose a run (and optionally a baseline); the other pages show it."
        return [f"Selected {run}" + (f" against baseline {baseline}. " if baseline else ". "),
                dcc.Link("Open its routing", href="/routing" + make_search({"run": run, "baseline": baseline}))]

    @app.callback(Output({"type": "run-link", "run": ALL}, "href"), Input(cid("baseline"), "value"))
    def links(baseline):
        """A run link in the table opens that run against the baseline chosen above (it is not lost)."""
        return ["/routing" + make_search({"run": item["id"]["run"], "baseline": baseline})
                for item in dash.ctx.outputs_list]


PAGE = Page("/", "Runs", "Runs", controls=([Runs()],), body=(html.Div(id="runs-choice", className="note"), runs_table),
            callbacks=register)
