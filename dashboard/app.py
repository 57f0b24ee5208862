"""The Dash app over a folder of runs: `create_app(runs_dir)`; `depthscope serve --runs DIR` runs it.

Pages are registered per module (dashboard/pages/*.py each declare PAGE, a `panels.Page`: its controls, panels and
views; dashboard.view_callbacks gives them their callbacks), in an explicit registry rather than Dash's pages
plugin: that plugin re-renders the page whenever the query string changes, and here every control writes its value
into the query string (so a view can be bookmarked, shared and reloaded) without re-rendering. The router renders
a page from its path and query; one callback writes the values of all controls present (ids {"type": "ctl" |
"sel", "key": K}) back into the query.

Every asset is served locally (no CDN); nothing the app does writes into a run.
"""
from __future__ import annotations

from pathlib import Path

import dash
from dash import ALL, Dash, Input, Output, State, dcc, html

from .components import SHARED_KEYS, make_search, message, parse_search, shared_search
from .panels import Page
from .params import problems
from .runs import Catalogue
from .view_callbacks import register_page, view_params


def pages() -> list[Page]:
    from .pages import compare, evolution, gradients, routing, runs, signal, statistics, tokens

    return [m.PAGE for m in (runs, routing, tokens, signal, gradients, statistics, compare, evolution)]


def create_app(runs_dir: str | Path, *, background: bool = True, catalogue: Catalogue | None = None,
               ablation=None) -> Dash:
    """The app over the runs under `runs_dir`. background=False computes aggregates in the callback (tests);
    ablation: the source-ablation workflow (Catalogue's)."""
    cat = catalogue or Catalogue(runs_dir, background=background, ablation=ablation)
    app = Dash(
        __name__,
        title="depthscope",
        serve_locally=True,
        suppress_callback_exceptions=True,
        assets_folder=str(Path(__file__).parent / "assets"),
        update_title=None,
    )
    app.catalogue = cat  # type: ignore[attr-defined]
    registry = pages()
    by_path = {p.path: p for p in registry}
    app.layout = html.Div([
        dcc.Location(id="url", refresh=False),
        html.Header([
            html.Div([html.Span("depthscope", className="brand"),
                      html.Span(str(cat.root), className="runs-root", title="runs folder")], className="brand-row"),
            html.Nav([dcc.Link(p.name, href=p.path, id=f"nav-{p.name.lower()}", className="nav-link")
                      for p in registry], className="nav"),
        ], className="header"),
        html.Main(id="page-content", className="content"),
    ])

    @app.callback(Output("page-content", "children"), Output("url", "search", allow_duplicate=True),
                  Input("url", "pathname"), State("url", "search"), prevent_initial_call="initial_duplicate")
    def route(pathname, search):
        page = by_path.get(pathname or "/")
        if page is None:
            return message(f"Page not found: {pathname}", "notfound"), dash.no_update
        params = with_suggestions(cat, parse_search(search))
        content = html.Div([html.H1(page.title, className="page-title"), page.layout(cat, params)],
                           className=f"page page-{page.name.lower()}")
        new = make_search(params)
        return content, new if new != (search or "") else dash.no_update

    @app.callback(Output("url", "search"), Input({"type": "ctl", "key": ALL}, "value"),
                  Input({"type": "sel", "key": ALL}, "data"), State("url", "search"), prevent_initial_call=True)
    def sync_url(values, selections, search):
        controls, stores = dash.ctx.inputs_list
        params = {**view_params([i["id"]["key"] for i in controls], values),
                  **view_params([i["id"]["key"] for i in stores], selections)}
        current = parse_search(search)
        for key in SHARED_KEYS:  # a page without a baseline picker keeps the baseline for the next page
            if key not in params and current.get(key):
                params[key] = current[key]
        new = make_search(params)
        return new if new != (search or "") else dash.no_update

    @app.callback(Output({"type": "ctl-msg", "key": ALL}, "children"), Input({"type": "ctl", "key": ALL}, "value"))
    def control_messages(values):
        """Next to each number box, why its value (typed or from the URL) is refused (params.RULES)."""
        params = {item["id"]["key"]: value for item, value in zip(dash.ctx.inputs_list[0], values)}
        bad = problems(params)
        return [bad.get(item["id"]["key"], "") for item in dash.ctx.outputs_list]

    @app.callback([Output(f"nav-{p.name.lower()}", "href") for p in registry]
                  + [Output(f"nav-{p.name.lower()}", "className") for p in registry],
                  Input("url", "search"), Input("url", "pathname"))
    def nav(search, pathname):
        shared = shared_search(parse_search(search))
        hrefs = [p.path + shared for p in registry]
        classes = ["nav-link active" if p.path == (pathname or "/") else "nav-link" for p in registry]
        return hrefs + classes

    for page in registry:
        register_page(app, cat, page)
    return app


def with_suggestions(cat: Catalogue, params: dict) -> dict:
    """params with a run and a baseline filled in where none is chosen: a first visit opens on a meaningful view
    (Catalogue.suggest_run, e.g. Block AttnRes) against its matching baseline (same shape, residual mixer)."""
    out = dict(params)
    if out.get("run") and out.get("baseline"):
        return out
    infos = cat.list()
    if not out.get("run"):
        out["run"] = cat.suggest_run(infos) or ""
    if not out.get("baseline") and out["run"]:
        out["baseline"] = cat.suggest_baseline(out["run"], infos) or ""
    return {k: v for k, v in out.items() if v}


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8050, debug: bool = False,
          ablation=None) -> None:
    app = create_app(runs_dir, ablation=ablation)
    app.run(host=host, port=port, debug=debug)
