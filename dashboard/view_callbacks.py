"""The one callback skeleton of the declared pages (dashboard.panels): each View gets a guarded callback (URL
parameters in, figures + message + polling out; an error becomes a panel, never a crash), each Selection a click
callback, each page with exportable panels a download button. `respond` is the skeleton as a plain function."""
from __future__ import annotations

import traceback
from typing import Callable

import dash
from dash import ALL, Input, Output, State, dcc

from depthscope.analyses import AnalysisError
from depthscope.probe import RunError

from .components import cid, message, sid
from .data import FilterError
from .figures.style import empty_figure
from .panels import Drawn, Page, Selection, View
from .runs import Catalogue, NotFound, Pending
from .views import FIGURES


def view_params(keys, values) -> dict:
    """View parameters from control / store values: a multi-choice list becomes "a,b" as in the URL."""
    return {key: ",".join(map(str, value)) if isinstance(value, list) else value for key, value in zip(keys, values)}


def guarded(draw: Callable[[], Drawn], n_figures: int, title: str = "") -> tuple[Drawn, bool]:
    """(what draw drew, poll off) or, when it raised, empty figures titled `title` and a panel saying why.

    NotFound -> a plain not-found message; Pending -> a progress message and polling on; RunError -> an error panel
    naming the file; FilterError / AnalysisError -> a note (the view refuses the parameters); anything else ->
    "Could not draw this view" (a bug in one view must not take the page down). The server keeps serving."""
    try:
        return draw(), True
    except NotFound as err:
        return Drawn((empty_figure("Run not found.", title),) * n_figures, message(str(err), "notfound")), True
    except Pending as err:
        return Drawn((empty_figure("Computing…", title),) * n_figures, message(str(err), "pending")), False
    except (RunError, FilterError, AnalysisError) as err:
        kind = "error" if isinstance(err, RunError) else "note"
        return Drawn((empty_figure(str(err), title),) * n_figures, message(str(err), kind)), True
    except Exception as err:
        traceback.print_exc()
        text = f"Could not draw this view: {type(err).__name__}: {err}"
        return Drawn((empty_figure(text, title),) * n_figures, message(text, "error")), True


def draw(cat: Catalogue, view: View, params: dict) -> Drawn:
    """The view's own draw, else each panel's figure from the registry."""
    if view.draw is not None:
        return view.draw(cat, params)
    return Drawn(tuple(FIGURES[p.figure].build(cat, params) for p in view.panels))


def respond(cat: Catalogue, view: View, params: dict, requested: bool = True) -> tuple:
    """The outputs of a view's callback, in view_outputs' order: figures, message, poll disabled.
    requested=False (a view drawn on request, not asked): the panels' placeholders."""
    if requested:
        drawn, poll_off = guarded(lambda: draw(cat, view, params), len(view.panels), view.title)
    else:
        drawn, poll_off = Drawn(tuple(p.empty() for p in view.panels)), True
    out = list(drawn.figures)
    if view.message:
        out.append(drawn.message)
    if view.poll and view.poll.owner:
        out.append(poll_off)
    return tuple(out)


def view_outputs(view: View) -> list[Output]:
    out = [Output(p.id, "figure") for p in view.panels]
    out += [Output(view.message, "children")] if view.message else []
    return out + ([Output(view.poll.id, "disabled")] if view.poll and view.poll.owner else [])


def view_inputs(view: View) -> list[Input]:
    out = [Input(cid(k), "value") for k in view.params] + [Input(sid(k), "data") for k in view.selections]
    out += [Input(view.poll.id, "n_intervals")] if view.poll else []
    return out + ([Input(view.on_request, "n_clicks")] if view.on_request else [])


def register_view(app, cat: Catalogue, view: View) -> None:
    keys = view.params + view.selections
    controls = [cid(k) for k in view.params]

    @app.callback(output=view_outputs(view), inputs=view_inputs(view))
    def draw_view(*values):
        requested = True
        if view.on_request:  # asked by its button; a new parameter value shows the placeholder again
            requested = bool(values[-1]) and dash.ctx.triggered_id not in controls
        return respond(cat, view, view_params(keys, values), requested)


def register_selection(app, cat: Catalogue, selection: Selection) -> None:
    graphs = [p.id for p in selection.panels]

    @app.callback(output=Output(sid(selection.key), "data"), inputs=[Input(g, "clickData") for g in graphs],
                  state=[State(cid(k), "value") for k in selection.params], prevent_initial_call=True)
    def select(*values):
        clicks, states = values[:len(graphs)], values[len(graphs):]
        clicked = clicks[graphs.index(dash.ctx.triggered_id)] if dash.ctx.triggered_id in graphs else clicks[0]
        value = selection.pick(cat, view_params(selection.params, states), clicked)
        return dash.no_update if value is None else value


def register_export(app, cat: Catalogue, page: str) -> None:
    """Download button of `page`: draws the chosen figure of the current view via dashboard.export."""

    @app.callback(Output(f"{page}-download", "data"), Output(f"{page}-exp-msg", "children"),
                  Input(f"{page}-exp-btn", "n_clicks"), State(f"{page}-exp-figure", "value"),
                  State(f"{page}-exp-format", "value"), State(f"{page}-exp-style", "value"),
                  State({"type": "ctl", "key": ALL}, "value"), State({"type": "sel", "key": ALL}, "data"),
                  prevent_initial_call=True)
    def download(n_clicks, figure, fmt, style, values, selections):
        from .export import render

        states = dash.ctx.states_list
        params = {**view_params([s["id"]["key"] for s in states[3]], values),
                  **view_params([s["id"]["key"] for s in states[4]], selections)}
        try:
            result = render(cat, figure, params, fmt, style)
        except Pending as err:
            return dash.no_update, str(err)
        except Exception as err:
            return dash.no_update, f"export failed: {err}"
        return dcc.send_bytes(result.data, result.name), f"{result.name} ({len(result.data):,} bytes)"


def register_page(app, cat: Catalogue, page: Page) -> None:
    """Every callback of a declared page: its views, its selections, its download button, its own extras."""
    for view in page.views:
        register_view(app, cat, view)
    for selection in page.selections:
        register_selection(app, cat, selection)
    if page.exports:
        register_export(app, cat, page.key)
    if page.callbacks:
        page.callbacks(app, cat)
