"""The app in the Debian Chromium over the demo bundle (assets/demo/runs): runs trained long enough to have depth
sinks, long-range jumps and non-uniform routing. Every page is opened for every run with that run and the
residual baseline chosen, as a person does, and must draw without a "Could not draw" message, an error panel,
a Dash error (devtools alert / callback error) or a browser console error. Then the interactions a person uses:
a heatmap cell click, a token click, each filter, the +/- buttons of a number box, a slider step, a download
per page.

One server and one browser serve the whole module (a fresh Chromium per test costs seconds on 2 cores); the
runs' aggregates live in a session-scoped catalogue.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs the Debian chromium and chromedriver")

DEMO_RUNS = Path(__file__).resolve().parents[2] / "assets" / "demo" / "runs"
BASELINE = "residual"

# Every page, and a selector that is present only once it drew its main figure / table with data.
PAGES = {
    "/": "#runs-table .run-row",
    "/routing": "#routing-graph .heatmaplayer",
    "/tokens": "#tokens-text .heatmaplayer, #tokens-text .scatterlayer .trace",
    "/signal": "#signal-graph .scatterlayer .trace",
    "/gradients": "#gradients-graph .scatterlayer .trace",
    "/statistics": "#statistics-sublayers",
    "/compare": "#compare-a .heatmaplayer",  # the difference needs shared (sublayer, source) pairs
    "/evolution": "#evolution-routing .heatmaplayer",
}
ERROR_TEXTS = ("Could not draw", "Traceback", "Callback error", "Error loading")


def demo_run_ids() -> list[str]:
    return sorted(p.parent.name for p in DEMO_RUNS.glob("*/manifest.json"))


@pytest.fixture(scope="session")
def demo_catalogue():
    """The demo bundle's catalogue: aggregates and analyses computed once per session (run-independent work
    such as Evolution's statistics over steps and Gradients' uniformity over checkpoints is cached here)."""
    from depthscope.dashboard.runs import Catalogue

    return Catalogue(DEMO_RUNS, background=False)


@pytest.fixture(scope="module")
def duo(request, demo_catalogue, tmp_path_factory):
    """One dash_duo-like composite (threaded server on a free port + headless Chromium) for the module, with
    Dash's dev tools on so that a callback error shows as the devtools alert."""
    import socket

    from dash.testing.application_runners import ThreadedRunner
    from dash.testing.composite import DashComposite

    from depthscope.dashboard.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    download = tmp_path_factory.mktemp("download")
    with ThreadedRunner() as server, DashComposite(
            server=server, browser="chrome", headless=True, options=request.config.hook.pytest_setup_options(),
            download_path=str(download)) as composite:
        app = create_app(DEMO_RUNS, catalogue=demo_catalogue)
        composite.start_server(app, port=port, debug=True, use_reloader=False, dev_tools_hot_reload=False,
                               dev_tools_props_check=True)
        yield composite


def settle(duo, timeout: float = 60) -> None:
    """Wait until Dash has no callback in flight and no graph still says "Loading…" or "Computing…"."""
    deadline = time.monotonic() + timeout
    script = """
        const s = window.store && window.store.getState();
        if (!s || !document.querySelector('.page')) return false;
        const cbs = Object.assign({}, s.callbacks || {});
        delete cbs.stored; delete cbs.completed;
        const busy = [].concat(...Object.values(cbs)).length > 0 || s.isLoading;
        const text = document.body.innerText + ' ' + Array.from(
            document.querySelectorAll('.gtitle, .annotation-text')).map(e => e.textContent).join(' ');
        return !busy && !/Loading…|Computing…/.test(text);"""
    while time.monotonic() < deadline:
        if duo.driver.execute_script(script):
            return
        time.sleep(0.1)
    raise AssertionError(f"the page did not settle in {timeout} s: {duo.driver.current_url}")


def problems(duo) -> list[str]:
    """Everything on the page or in the console that says a view failed."""
    found = []
    source = duo.driver.page_source
    for text in ERROR_TEXTS:
        if text in source:
            at = source.index(text)
            found.append(source[max(0, at - 80): at + 200])
    for panel in duo.find_elements(".panel-error, .panel-notfound, .dash-debug-alert, .test-devtools-error-count"):
        found.append(f"{panel.get_attribute('class')}: {panel.text}")
    found += [f"console: {entry['message']}" for entry in duo.get_logs() or [] if "favicon" not in entry["message"]]
    return found


PAGE_CLASS = {"/": "page-runs", "/routing": "page-routing", "/tokens": "page-tokens", "/signal": "page-signal",
              "/gradients": "page-gradients", "/statistics": "page-statistics", "/compare": "page-compare",
              "/evolution": "page-evolution"}


def open_page(duo, path: str, params: dict | None = None, ready: str | None = None, reload: bool = True) -> None:
    """Open path?params as a person does (reload=True: typing the URL / following a shared link; False: an
    in-app link, which changes the page without reloading the app), wait until it settled, and fail on any
    error message; `ready`, when given, must then be on the page."""
    from depthscope.dashboard.components import make_search

    duo.reset_log_timestamp()
    url = path + make_search(params or {})
    started = time.monotonic()
    if reload:
        duo.driver.get(duo.server_url + url)
    else:  # what dcc.Link does on a click
        duo.driver.execute_script("window.history.pushState({}, '', arguments[0]);"
                                  "window.dispatchEvent(new CustomEvent('_dashprivate_pushstate'));", url)
    duo.wait_for_element("." + PAGE_CLASS[path], timeout=30)
    settle(duo)
    print(f"{path} {params}: {time.monotonic() - started:.1f} s")
    assert not problems(duo), f"{path} {params}: {problems(duo)}"
    if ready and not duo.find_elements(ready):
        text = duo.find_element("#page-content").text[:600]
        raise AssertionError(f"{path} {params}: nothing drawn ({ready} missing); the page says: {text}")


def url_params(duo) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(duo.driver.current_url).query).items()}


def ctl(key: str) -> str:
    """CSS selector of the control the URL carries as `key` (Dash's pattern-matching id, escaped)."""
    raw = '{"key":"%s","type":"ctl"}' % key
    return "#" + "".join("\\" + c if c in '{}":,' else c for c in raw)


# -------------------------------------------------------------------------------------------- every view


@pytest.mark.parametrize("run", demo_run_ids())
def test_every_page_draws_for_every_demo_run(duo, run):
    for i, (path, ready) in enumerate(PAGES.items()):  # each page by its link, as a person clicks through
        open_page(duo, path, {"run": run, "baseline": BASELINE}, ready, reload=i == 0)
