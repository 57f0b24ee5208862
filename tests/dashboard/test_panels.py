"""Declared pages (dashboard.panels) and their one callback skeleton (dashboard.view_callbacks): every id a page's
callbacks name is in its layout, every panel draws a registered figure, errors become panels, an on-request
view waits for its button, and each figure on the app is drawn by exactly one callback."""
from __future__ import annotations

import pytest
from dash.development.base_component import Component

from depthscope.dashboard.app import create_app, pages
from depthscope.dashboard.components import cid, sid
from depthscope.dashboard.runs import Catalogue
from depthscope.dashboard.view_callbacks import respond, view_params
from depthscope.dashboard.views import FIGURES

PAGES = {p.path: p for p in pages()}


def ids_in(tree) -> list:
    """Every id in a layout tree (dict ids as tuples of their items, so that they can be compared)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (list, tuple)):
            todo.extend(node)
        elif isinstance(node, Component):
            ident = getattr(node, "id", None)
            if ident is not None:
                out.append(tuple(sorted(ident.items())) if isinstance(ident, dict) else ident)
            todo.append(getattr(node, "children", None))
    return out


def key(ident):
    return tuple(sorted(ident.items())) if isinstance(ident, dict) else ident


@pytest.mark.parametrize("path", sorted(PAGES))
def test_layout_holds_every_id_its_callbacks_name(catalogue, path):
    page = PAGES[path]
    ids = ids_in(page.layout(catalogue, {"run": "full", "baseline": "residual", "training": "/ckpt/train"}))
    assert len(ids) == len(set(ids)), "an id is used twice"
    wanted = []
    for view in page.views:
        wanted += [p.id for p in view.panels] + [key(cid(k)) for k in view.params]
        wanted += [key(sid(k)) for k in view.selections]
        wanted += [i for i in (view.message, view.poll and view.poll.id, view.on_request) if i]
    for selection in page.selections:
        wanted += [p.id for p in selection.panels] + [key(cid(k)) for k in selection.params]
    if page.exports:
        wanted += [f"{page.key}-exp-{part}" for part in ("figure", "format", "style", "btn", "msg")]
    assert wanted or path == "/"
    assert [w for w in wanted if w not in ids] == []


def test_panels_draw_registered_figures_offered_once():
    for page in PAGES.values():
        panels = [p for v in page.views for p in v.panels]
        assert all(p.figure in FIGURES for p in panels), page.path
        assert len({p.id for p in panels}) == len(panels) and len(dict(page.exports)) == len(page.exports)


def test_each_figure_is_drawn_by_one_callback(runs_dir):
    app = create_app(runs_dir, background=False)
    drawn = [o.component_id for entry in app.callback_map.values()
             for o in (entry["output"] if isinstance(entry["output"], list) else [entry["output"]])
             if o.component_property == "figure"]
    declared = [p.id for page in PAGES.values() for v in page.views for p in v.panels]
    assert sorted(drawn) == sorted(declared)


def test_view_callback_turns_errors_into_panels(catalogue):
    heatmap = PAGES["/routing"].views[0]
    params = dict.fromkeys(heatmap.params)
    fig, msg, poll = respond(catalogue, heatmap, {**params, "run": "../etc"})
    assert "not found" in str(msg.children) and msg.className.endswith("notfound") and poll is True
    fig, msg, _ = respond(catalogue, heatmap, {**params, "run": "broken"})
    assert msg.className.endswith("error") and "manifest.json" in msg.children
    assert fig.layout.title.text == "Depth attention"  # the empty figure names the view
    fig, msg, _ = respond(catalogue, heatmap, {**params, "run": "full", "start": -4})
    assert "From token must be a whole number of at least 0" in msg.children and msg.className.endswith("note")
    fig, msg, poll = respond(catalogue, heatmap, {**params, "run": "full"})
    assert msg == "" and poll is True and "Depth attention of full" in fig.layout.title.text


def test_a_view_without_message_or_poll_returns_its_figures_only(catalogue):
    token = PAGES["/tokens"].views[1]
    out = respond(catalogue, token, {"run": "full", "token": "5"})
    assert len(out) == 2 and "Token 5" in out[0].layout.title.text
    out = respond(catalogue, token, {"run": "nope", "token": "5"})
    assert len(out) == 2 and out[0].layout.title.text == "Token"


def test_on_request_view_waits_for_its_button(catalogue):
    ablation = PAGES["/statistics"].views[1]
    fig, poll = respond(catalogue, ablation, {"run": "full"}, requested=False)
    assert poll is True and fig.layout.annotations[0].text == ablation.panels[0].placeholder
    assert fig.layout.title.text == "Causal source ablation"


def test_view_params_carry_lists_as_the_url_does():
    assert view_params(("run", "others", "start"), ("a", ["b", "c"], 0)) == {"run": "a", "others": "b,c", "start": 0}


def test_a_page_with_nothing_to_show_is_its_message_alone(tmp_path):
    layout = PAGES["/evolution"].layout(Catalogue(tmp_path, background=False), {})
    assert layout.className == "panel panel-note" and "No training here" in layout.children


def test_selection_picks_from_a_click(catalogue):
    cell, = PAGES["/routing"].selections
    assert cell.pick(catalogue, {"run": "full"}, {"points": [{"customdata": [4, 1]}]}) == "4,1"
    assert cell.pick(catalogue, {"run": "full"}, {"points": []}) is None
    token, = PAGES["/tokens"].selections
    assert token.pick(catalogue, {}, {"points": [{"customdata": 70}]}) == "70"
    assert token.pick(catalogue, {}, {"points": [{"customdata": -1}]}) is None
