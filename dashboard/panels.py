"""Declarative pages: a page lists its controls, its panels (figures of the registry views.FIGURES, by name) and the
views that draw them; `Page.layout` lays them out, and dashboard.view_callbacks gives each view one guarded callback,
each selection one click callback and the page one download button.

    SIGNAL = Panel("signal-graph", "signal", export="signal vs depth", loading=True)
    PAGE = Page("/signal", "Signal", "Signal growth against depth",
                controls=[[Runs(others=True)], [Choice("quantity", "Quantity", QUANTITIES, "output_rms", radio=True)]],
                body=[SIGNAL, html.P("Median over tokens ...", className="note")],
                views=[View("Signal against depth", [SIGNAL], ("run", "baseline", "others", "quantity"),
                            message="signal-msg", draw=draw)])

A control is a callable (catalogue, URL params) -> component(s) (components.Runs, Number, Text, Choice, or a page's
own function). Ids are written in full where tests and CSS name them; the page adds the message line
f"{key}-msg" under its controls when a view reports there, and an interval for each poll a view owns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import plotly.graph_objects as go
from dash import dcc, html
from dash.development.base_component import Component

from .components import GRAPH_CONFIG, export_bar, sid
from .figures.style import empty_figure
from .runs import Catalogue


@dataclass(frozen=True)
class Panel:
    """One figure of a page: the dcc.Graph `id`, drawing views.FIGURES[figure] (also what its export writes)."""

    id: str
    figure: str
    export: str = ""  # its name in the page's export bar; "" = not offered
    placeholder: str = "Loading…"  # shown until the view draws (and by a view drawn on request, until asked)
    placeholder_title: str = ""
    loading: bool = False  # a spinner while it redraws (a page's slow main figure)

    def empty(self) -> go.Figure:
        return empty_figure(self.placeholder, self.placeholder_title)

    def component(self):
        graph = dcc.Graph(id=self.id, config=GRAPH_CONFIG, figure=self.empty())
        return dcc.Loading(graph, type="dot", delay_show=400) if self.loading else graph


class Row:
    """Items side by side, each half the page wide; an item is anything a page body holds, or a list of those."""

    def __init__(self, *items):
        self.items = items


@dataclass(frozen=True)
class Poll:
    """An interval that redraws a view while its data is still being computed (catalogue Pending)."""

    id: str
    every_ms: int = 1000
    owner: bool = True  # the view turns it on while pending, off once drawn (False: the view only redraws on it)


@dataclass
class Drawn:
    """What a view's draw returns: one figure per panel and its message (a note, a table)."""

    figures: tuple
    message: Any = ""


@dataclass(frozen=True)
class View:
    """Panels drawn together by one guarded callback from the URL parameters `params` (control values) and
    `selections` (a clicked cell / token). An error becomes empty figures titled `title` and a panel saying why."""

    title: str
    panels: tuple[Panel, ...]
    params: tuple[str, ...]
    selections: tuple[str, ...] = ()
    draw: Callable[[Catalogue, dict], Drawn] | None = None  # default: each panel's figure from views.FIGURES
    message: str | None = None  # id of what shows its message (a note, a table, or why it cannot draw); None: not shown
    poll: Poll | None = None
    on_request: str | None = None  # id of a button: drawn once it is pressed; a parameter change resets it


@dataclass(frozen=True)
class Selection:
    """A URL parameter (a store, sid(key)) set by clicking one of `panels`: pick(catalogue, params, clickData) gives
    its value, or None to ignore the click; `params` are the control values pick reads."""

    key: str
    panels: tuple[Panel, ...]
    pick: Callable[[Catalogue, dict, Any], str | None]
    params: tuple[str, ...] = ()


class Unavailable(Exception):
    """Raised by a control or body part when the page has nothing to show: the page is then `component` alone."""

    def __init__(self, component):
        super().__init__("page unavailable")
        self.component = component


@dataclass(frozen=True)
class Page:
    """One page of the app. `controls`: rows (lists of controls, one `.controls` line each) or single controls
    placed as they are; `body`: Panels, Rows, components or callables (cat, params) -> component, in reading
    order; `callbacks(app, cat)`: what the page does beyond its views (the Runs page's links)."""

    path: str
    name: str
    title: str
    controls: tuple = ()
    body: tuple = ()
    views: tuple[View, ...] = ()
    selections: tuple[Selection, ...] = ()
    callbacks: Callable | None = None

    @property
    def key(self) -> str:
        """The prefix of the page's own ids (routing-msg, routing-poll, routing-exp-btn, ...)."""
        return self.name.lower()

    @property
    def exports(self) -> list[tuple[str, str]]:
        """(figure, name) of each panel the export bar offers, in the order of the views' panels."""
        return [(p.figure, p.export) for v in self.views for p in v.panels if p.export]

    def layout(self, cat: Catalogue, params: dict):
        try:
            controls = _flat(_row(item, cat, params) if isinstance(item, (list, tuple)) else _render(item, cat, params)
                             for item in self.controls)
            body = [_render(item, cat, params) for item in self.body]
        except Unavailable as why:
            return why.component
        message = [html.Div(id=f"{self.key}-msg")] if any(v.message == f"{self.key}-msg" for v in self.views) else []
        stores = [dcc.Store(id=sid(s.key), data=params.get(s.key) or None) for s in self.selections]
        exports = [export_bar(self.key, self.exports)] if self.exports else []
        polls = {v.poll.id: v.poll for v in self.views if v.poll and v.poll.owner}
        intervals = [dcc.Interval(id=p.id, interval=p.every_ms, disabled=True) for p in polls.values()]
        return html.Div([*controls, *message, *body, *stores, *exports, *intervals])


def _render(item, cat: Catalogue, params: dict):
    if isinstance(item, Panel):
        return item.component()
    if isinstance(item, Row):
        return html.Div([html.Div(_render(i, cat, params), className="half") for i in item.items], className="row")
    if isinstance(item, list):
        return [_render(i, cat, params) for i in item]
    if callable(item) and not isinstance(item, Component):  # a control or a page's own part
        return item(cat, params)
    return item


def _row(controls, cat: Catalogue, params: dict) -> html.Div:
    return html.Div(_flat(_render(c, cat, params) for c in controls), className="controls")


def _flat(parts) -> list:
    out = []
    for part in parts:
        out.extend(part if isinstance(part, list) else [part])
    return out
