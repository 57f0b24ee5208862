"""The app in the Debian Chromium (dash_duo, headless): every page opens, controls change the view, a heatmap
cell click shows its distribution, a shared URL restores the view, and a figure downloads as a valid file."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs the Debian chromium and chromedriver")

PAGES = {
    "/": "#runs-table",
    "/routing?run=full": "#routing-graph .heatmaplayer",
    "/tokens?run=block&token=70": "#tokens-text .heatmaplayer",
    "/signal?run=full&baseline=residual": "#signal-graph .scatterlayer",
    "/gradients?run=full&baseline=residual": "#gradients-graph .scatterlayer",
    "/statistics?run=block": "#statistics-sublayers",
    "/compare?run=full&other=block": "#compare-diff .heatmaplayer",
    "/evolution": "#evolution-routing .heatmaplayer",
}


@pytest.fixture
def app_duo(dash_duo, runs_dir, free_port):
    from depthscope.dashboard.app import create_app

    app = create_app(runs_dir, background=False)
    dash_duo.start_server(app, port=free_port)
    return dash_duo


def visit(duo, path):
    duo.driver.get(duo.server_url + path)


def open_view(duo, path, selector, timeout=45, attempts=3):
    """Visit path and wait for selector; reload up to `attempts` times (a shared 2-core machine can stall a
    render). The selector must still appear: a page that never renders fails."""
    from selenium.common.exceptions import TimeoutException

    for attempt in range(attempts):
        visit(duo, path)
        try:
            duo.wait_for_element(selector, timeout=timeout)
            return
        except TimeoutException:
            if attempt == attempts - 1:
                raise


def test_every_page_opens_and_a_broken_run_is_listed(app_duo):
    for path, selector in PAGES.items():
        open_view(app_duo, path, selector)
    visit(app_duo, "/")
    app_duo.wait_for_contains_text("#runs-table", "broken", timeout=10)
    assert "manifest.json" in app_duo.find_element(".run-broken").text
    visit(app_duo, "/routing?run=../../etc")
    app_duo.wait_for_element(".panel-notfound", timeout=20)
    visit(app_duo, "/routing?run=broken")
    app_duo.wait_for_element(".panel-notfound, .panel-error", timeout=20)
    visit(app_duo, "/routing?run=full")  # the server still serves
    app_duo.wait_for_element("#routing-graph .heatmaplayer", timeout=20)
    assert app_duo.get_logs() in ([], None) or all("favicon" in str(e) for e in app_duo.get_logs())


def test_control_click_and_shared_url(app_duo):
    open_view(app_duo, "/routing?run=full", "#routing-graph .heatmaplayer")
    regex = app_duo.find_element("#" + '{"key":"regex","type":"ctl"}'.replace('"', '\\"').replace("{", "\\{")
                                 .replace("}", "\\}").replace(":", "\\:").replace(",", "\\,"))
    regex.send_keys("[aeiou]\n")
    app_duo.wait_for_contains_text("#routing-graph .gtitle", "[aeiou]", timeout=20)
    assert "regex=%5Baeiou%5D" in app_duo.driver.current_url
    # click a heatmap cell: its distribution and top tokens appear, and the URL carries the cell
    from selenium.webdriver.common.action_chains import ActionChains

    drag = app_duo.find_elements("#routing-graph .nsewdrag")[-1]  # the pre-MLP / final panel
    ActionChains(app_duo.driver).move_to_element_with_offset(drag, 0, drag.size["height"] // 3).click().perform()
    app_duo.wait_for_contains_text("#routing-cell-graph .gtitle", "over", timeout=20)
    app_duo.wait_for_element("#routing-top-table", timeout=20)
    app_duo.wait_for_contains_text("#routing-cell-top", "←", timeout=20)
    for _ in range(40):
        if "cell=" in app_duo.driver.current_url:
            break
        time.sleep(0.25)
    shared = app_duo.driver.current_url
    assert "cell=" in shared and "run=full" in shared
    # follow the shared URL in a fresh load: the same filter, title and cell come back
    app_duo.driver.get("about:blank")
    app_duo.driver.get(shared)
    app_duo.wait_for_contains_text("#routing-graph .gtitle", "[aeiou]", timeout=30)
    app_duo.wait_for_contains_text("#routing-cell-graph .gtitle", "over", timeout=30)
    # the nav carries run and baseline to the other pages
    app_duo.find_element("#nav-signal").click()
    app_duo.wait_for_element("#signal-graph .scatterlayer", timeout=30)
    assert "run=full" in app_duo.driver.current_url


def test_download_a_figure(app_duo):
    open_view(app_duo, "/routing?run=block", "#routing-graph .heatmaplayer")
    app_duo.find_element("#routing-exp-btn").click()
    app_duo.wait_for_contains_text("#routing-exp-msg", "routing.svg", timeout=60)
    target = Path(app_duo.download_path) / "routing.svg"
    for _ in range(80):
        if target.exists() and target.stat().st_size > 0:
            break
        time.sleep(0.25)
    text = target.read_text()
    assert "<svg" in text and "<image" not in text and "block1" in text
