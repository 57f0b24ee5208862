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


# -------------------------------------------------------------------------------------------- interactions


def wait_url(duo, key: str, value: str | None = None, timeout: float = 20) -> dict:
    """Wait until the URL carries `key` (= value when given); the URL params then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = url_params(duo)
        if key in params and (value is None or params[key] == value):
            return params
        time.sleep(0.1)
    raise AssertionError(f"the URL never carried {key}={value}: {duo.driver.current_url}")


def type_into(duo, key: str, text: str) -> None:
    box = duo.find_element(ctl(key))
    box.send_keys("\ue009a")  # ctrl+a: replace what is there
    box.send_keys("\ue003" + text + "\n")  # backspace, the text, enter


def download(duo, page: str) -> None:
    """Press the page's Download button: the file named in the message must arrive, non-empty."""
    duo.find_element(f"#{page}-exp-btn").click()
    duo.wait_for_contains_text(f"#{page}-exp-msg", "bytes", timeout=90)
    name = duo.find_element(f"#{page}-exp-msg").text.split(" ")[0]
    target = Path(duo.download_path) / name
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (target.exists() and target.stat().st_size > 0):
        time.sleep(0.2)
    assert target.exists() and target.stat().st_size > 0, f"{page}: {name} did not arrive"


def test_first_visit_opens_block_attnres_against_its_baseline(duo):
    """No run chosen: the app opens on Block AttnRes against the matching residual baseline, not 'choose a run'."""
    open_page(duo, "/routing", {}, PAGES["/routing"])
    params = wait_url(duo, "run")
    assert params["run"] == "block_attnres" and params["baseline"] == "residual"
    assert "choose a run" not in duo.find_element("#page-content").text.lower()
    open_page(duo, "/signal", {"run": "full_attnres"}, PAGES["/signal"])  # a baseline is suggested for a page
    assert wait_url(duo, "baseline")["baseline"] == "residual"
    assert "suggested baseline" in duo.find_element("#page-content").text


def test_routing_filters_cell_click_and_download(duo):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(duo, "/routing", {"run": "block_attnres", "baseline": BASELINE}, PAGES["/routing"])
    assert not duo.find_elements(ctl("baseline"))  # no picker that does nothing; the baseline stays in the URL
    for key, text, shown in (("start", "0", "tokens 0.."), ("stop", "900", "tokens 0..900"),
                             ("doc", "1", "document 1"), ("regex", "[aeiou]", "[aeiou]")):
        type_into(duo, key, text)
        duo.wait_for_contains_text("#routing-graph .gtitle", shown, timeout=30)
        settle(duo)
        assert not problems(duo), (key, problems(duo))
    params = url_params(duo)
    assert params["start"] == "0" and params["baseline"] == BASELINE  # 0 is kept: the link restores the view
    drag = duo.find_elements("#routing-graph .nsewdrag")[-1]
    ActionChains(duo.driver).move_to_element_with_offset(drag, drag.size["width"] // 4, drag.size["height"] // 2) \
        .click().perform()
    duo.wait_for_element("#routing-top-table", timeout=30)
    wait_url(duo, "cell")
    assert not problems(duo)
    download(duo, "routing")


def test_number_boxes_refuse_bad_values_next_to_the_control(duo):
    """Typed or from the URL, one rule: refused with a message next to the box, the box keeps what was typed."""
    open_page(duo, "/routing", {"run": "block_attnres", "start": "-4"})
    msg = '#' + '{"key":"start","type":"ctl-msg"}'.translate({ord(c): "\\" + c for c in '{}":,'})
    duo.wait_for_contains_text(msg, "From token must be a whole number of at least 0", timeout=20)
    assert "From token must be" in duo.find_element("#routing-msg").text  # the view refuses too, no figure
    type_into(duo, "start", "12")
    duo.wait_for_contains_text("#routing-graph .gtitle", "tokens 12..", timeout=30)
    assert duo.find_element(msg).text == ""
    type_into(duo, "start", "-5")
    duo.wait_for_contains_text(msg, "got -5", timeout=20)
    assert duo.find_element(ctl("start")).get_attribute("value") == "-5"

    open_page(duo, "/tokens", {"run": "block_attnres", "wlen": "100000"})
    wlen = msg.replace("start", "wlen")
    duo.wait_for_contains_text(wlen, "Window length must be a whole number from 1 to 4096", timeout=20)
    open_page(duo, "/statistics", {"run": "block_attnres", "k": "-1"})
    duo.wait_for_contains_text(msg.replace("start", "k"), "Long-range k must be a number of at least 0", timeout=20)
    for bad in ("abc", "1.5"):  # was HTTP 500 and a blank page
        open_page(duo, "/evolution", {"step": bad})
        duo.wait_for_contains_text("#page-content", f"Training step must be a whole number", timeout=20)
        assert duo.find_elements(PAGES["/evolution"])  # and the page still draws


def test_tokens_plus_button_token_click_and_download(duo):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(duo, "/tokens", {"run": "block_attnres"}, PAGES["/tokens"])
    # the default statistic shows something for Block AttnRes (long-range mass is 0 for every token there)
    assert wait_url(duo, "stat")["stat"] != "long_range"
    type_into(duo, "wstart", "10")
    wait_url(duo, "wstart", "10")
    plus = duo.find_element(ctl("wstart")).find_element(
        "xpath", "./ancestor::div[contains(@class, 'ctl')][1]//button[contains(@class, 'dash-stepper-increment')]")
    duo.driver.execute_script("arguments[0].click()", plus)  # the steppers show on hover only
    wait_url(duo, "wstart", "11")
    assert duo.find_element(ctl("wstart")).get_attribute("value") == "11"
    duo.wait_for_contains_text("#tokens-text .gtitle", "tokens 11..", timeout=30)
    settle(duo)
    points = duo.find_elements("#tokens-text .heatmaplayer, #tokens-text .scatterlayer .trace")
    drag = duo.find_elements("#tokens-text .nsewdrag")[0]
    assert points
    ActionChains(duo.driver).move_to_element_with_offset(drag, 30, 20).click().perform()
    wait_url(duo, "token")
    duo.wait_for_element("#tokens-routing .heatmaplayer", timeout=30)
    settle(duo)
    assert not problems(duo)
    download(duo, "tokens")


def test_mhc_tokens_says_why_and_offers_a_statistic_that_exists(duo):
    open_page(duo, "/tokens", {"run": "mhc"}, PAGES["/tokens"])
    assert wait_url(duo, "stat")["stat"] not in ("long_range", "locality")
    open_page(duo, "/tokens", {"run": "mhc", "stat": "long_range"})
    duo.wait_for_contains_text("#tokens-msg", "no depth distance", timeout=20)
    assert "normalised entropy" in duo.find_element("#tokens-msg").text


def test_runs_baseline_survives_a_run_link(duo):
    open_page(duo, "/", {"run": "full_attnres", "baseline": "denseformer"}, PAGES["/"])
    duo.find_element("#" + '{"run":"mhc","type":"run-link"}'.translate({ord(c): "\\" + c for c in '{}":,'})).click()
    duo.wait_for_element(".page-routing", timeout=30)
    params = wait_url(duo, "run", "mhc")
    assert params.get("baseline") == "denseformer"


def test_signal_names_runs_lacking_a_quantity_and_downloads(duo):
    open_page(duo, "/signal", {"run": "block_attnres", "baseline": BASELINE, "others": "denseformer",
                               "quantity": "residual_rms"}, PAGES["/signal"])
    duo.wait_for_contains_text("#signal-msg", "was not recorded by block_attnres", timeout=20)
    download(duo, "signal")


def test_evolution_slider_step_label_and_download(duo):
    open_page(duo, "/evolution", {"run": "block_attnres"}, PAGES["/evolution"])
    text = duo.find_element("#page-content").text
    assert "../" not in text and "block_attnres · block_attnres" in text
    from selenium.webdriver.common.action_chains import ActionChains

    marks = [m for m in duo.find_elements(".page-evolution .dash-slider-mark") if m.text.strip() == "122"]
    assert marks, "no slider mark for step 122"
    ActionChains(duo.driver).move_to_element(marks[0]).click().perform()  # on the track, where the mark is
    wait_url(duo, "step", "122")
    duo.wait_for_contains_text("#evolution-routing .gtitle", "step 122", timeout=30)
    settle(duo)
    assert not problems(duo)
    download(duo, "evolution")


@pytest.mark.parametrize("path,page", [("/gradients", "gradients"), ("/statistics", "statistics"),
                                       ("/compare", "compare")])
def test_download_on_the_other_pages(duo, path, page):
    open_page(duo, path, {"run": "block_attnres", "baseline": BASELINE}, PAGES[path])
    download(duo, page)
