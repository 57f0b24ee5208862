"""Small layout pieces shared by the pages: controls whose values the URL carries (and their declarations: Runs,
Number, Text, Choice, each a callable (catalogue, URL params) -> component), run pickers, the export bar and the
error / not-found / pending panels."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from dash import dcc, html

from .runs import Catalogue

# Query keys kept when moving between pages (the rest belongs to one page's view).
SHARED_KEYS = ("run", "baseline")
GRAPH_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "scale": 1},
                "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def cid(key: str) -> dict:
    """Id of a control whose value the URL carries as `key`."""
    return {"type": "ctl", "key": key}


def sid(key: str) -> dict:
    """Id of a selection store (clicked cell, clicked token) whose data the URL carries as `key`."""
    return {"type": "sel", "key": key}


def parse_search(search: str | None) -> dict:
    return dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))


def make_search(params: dict) -> str:
    """The query string of `params`, without empty values; 0 is a value (step 0, document 0) and is kept."""
    clean = {k: v for k, v in params.items() if v is not None and v is not False and v != "" and v != []}
    return ("?" + urlencode(clean)) if clean else ""


def shared_search(params: dict) -> str:
    return make_search({k: params.get(k) for k in SHARED_KEYS})


def control(label: str, component, width: str | None = None) -> html.Div:
    return html.Div([html.Label(label, className="ctl-label"), component], className="ctl",
                    style={"width": width} if width else None)


def mid(key: str) -> dict:
    """Id of the message shown next to the control `key` when its value breaks its rule (params.RULES)."""
    return {"type": "ctl-msg", "key": key}


def number_control(key: str, params: dict, default=None, placeholder: str | None = None) -> html.Div:
    """A number box for URL parameter `key`, labelled and checked by params.RULES[key], with its message below.

    No min / max on the box itself: a browser-invalid value reaches the server as empty (so it could not be
    refused with a message), and dash 4's +/- buttons empty a box that has a min but no max."""
    from .params import RULES

    value = params.get(key)
    value = default if value in (None, "") else _number(value)
    return html.Div([html.Label(RULES[key].label, className="ctl-label"),
                     dcc.Input(id=cid(key), type="number", value=value, debounce=True, placeholder=placeholder),
                     html.Div(id=mid(key), className="ctl-msg", role="alert")], className="ctl")


def _number(value):
    """A URL value as the number it spells (shown as typed when it spells none: the message says why)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number


def run_options(cat: Catalogue, include_empty: bool = True) -> list[dict]:
    options = [{"label": "—", "value": ""}] if include_empty else []
    for info in cat.list():
        if info.ok:
            options.append({"label": f"{info.id}  ·  {info.kind}", "value": info.id})
    return options


def run_pickers(cat: Catalogue, params: dict, baseline: bool = True, others: bool = False,
                other_key: str | None = None) -> list:
    options = run_options(cat)
    suggested = cat.suggest_baseline(params.get("run")) if baseline or other_key else None
    options = [dict(o, label=o["label"] + "  (suggested baseline: same shape, residual)")
               if o["value"] == suggested else o for o in options]
    known = {o["value"] for o in options}
    for key in ("run", "baseline", other_key):
        value = params.get(key) if key else None
        if value and value not in known:  # keep an unknown id so that the view says "not found"
            options.append({"label": f"{value} (not found)", "value": value})
            known.add(value)
    out = [control("Run", dcc.Dropdown(id=cid("run"), options=options, value=params.get("run") or "",
                                       clearable=False), "320px")]
    if other_key:
        out.append(control("Compare with", dcc.Dropdown(id=cid(other_key), options=options,
                                                        value=params.get(other_key) or params.get("baseline") or "",
                                                        clearable=False), "320px"))
    if baseline:
        out.append(control("Baseline", dcc.Dropdown(id=cid("baseline"), options=options,
                                                    value=params.get("baseline") or "", clearable=False), "320px"))
    if others:
        values = [v for v in str(params.get("others") or "").split(",") if v]
        out.append(control("Other runs", dcc.Dropdown(id=cid("others"), options=options[1:], value=values, multi=True),
                           "420px"))
    return out


def export_bar(page: str, figures: list[tuple[str, str]]) -> html.Div:
    """Figure / format / style pickers and a download button (the app's side of `depthscope export`)."""
    return html.Div([
        html.Span("Export", className="ctl-label", style={"marginRight": "8px"}),
        dcc.Dropdown(id=f"{page}-exp-figure", options=[{"label": n, "value": v} for v, n in figures],
                     value=figures[0][0], clearable=False, style={"width": "230px"}),
        dcc.Dropdown(id=f"{page}-exp-format", options=["svg", "pdf", "png"], value="svg", clearable=False,
                     style={"width": "90px"}),
        dcc.Dropdown(id=f"{page}-exp-style", options=[{"label": "single column", "value": "single"},
                                                      {"label": "double column", "value": "double"}],
                     value="single", clearable=False, style={"width": "150px"}),
        html.Button("Download", id=f"{page}-exp-btn", className="button"),
        html.Span(id=f"{page}-exp-msg", className="note"),
        dcc.Download(id=f"{page}-download"),
    ], className="export-bar")


def message(text: str, kind: str = "note") -> html.Div:
    """kind: note | error | notfound | pending."""
    return html.Div(text, className=f"panel panel-{kind}", role="status" if kind == "pending" else None)


# ------------------------------------------------------------------------------------------------ declarations


@dataclass(frozen=True)
class Runs:
    """The run pickers: Run, then Compare with (URL key `other`), Baseline, Other runs as asked."""

    baseline: bool = True
    others: bool = False
    other: str | None = None

    def __call__(self, cat: Catalogue, params: dict) -> list:
        return run_pickers(cat, params, baseline=self.baseline, others=self.others, other_key=self.other)


@dataclass(frozen=True)
class Number:
    """A number box for `key`, labelled and checked by params.RULES[key] (number_control)."""

    key: str
    default: float | None = None
    placeholder: str | None = None

    def __call__(self, cat: Catalogue, params: dict) -> html.Div:
        return number_control(self.key, params, default=self.default, placeholder=self.placeholder)


@dataclass(frozen=True)
class Text:
    """A text box for `key`, applied on Enter or when it loses focus."""

    key: str
    label: str
    placeholder: str = ""

    def __call__(self, cat: Catalogue, params: dict) -> html.Div:
        return control(self.label, dcc.Input(id=cid(self.key), type="text", value=params.get(self.key) or "",
                                             debounce=True, placeholder=self.placeholder))


@dataclass(frozen=True)
class Choice:
    """One of `options` for `key` ({"label", "value"} dicts): inline radio items, or a dropdown that cannot be
    cleared; `default` when the URL carries none."""

    key: str
    label: str
    options: tuple
    default: str
    radio: bool = False
    width: str | None = None

    def __call__(self, cat: Catalogue, params: dict) -> html.Div:
        value, options = params.get(self.key) or self.default, list(self.options)
        box = (dcc.RadioItems(id=cid(self.key), options=options, value=value, inline=True) if self.radio
               else dcc.Dropdown(id=cid(self.key), options=options, value=value, clearable=False))
        return control(self.label, box, self.width)
