"""The dashboard in a real browser: Playwright driving Debian's Chromium headless.

Each view loads with no console error and a screenshot is saved; user strings such as
``<script>alert(1)</script>`` show literally and never run; a live update arrives while a writer writes;
alerts link to their layer and step; the token flow works with cookies (event stream and images too).
Set ``NETSIGHT_SCREENSHOTS=DIR`` to also write the screenshots there as ``dashboard-<view>.png``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

import netsight as ns  # noqa: E402
from netsight.server import serve  # noqa: E402
from netsight.store import Alert  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from _server_store import LAYERS, TREE, write_run  # noqa: E402

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
VIEWS = [
    "runs",
    "scalars",
    "grads",
    "activations",
    "histograms",
    "backprop",
    "actmaps",
    "explanations",
    "alerts",
    "attention",
]
EVIL_SCRIPT = "<script>alert(1)</script>"
EVIL_IMG = '"><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dash")
    write_run(d, "mnist")
    write_run(
        d,
        "xss",
        layers=[EVIL_IMG, "ok"],
        metrics=[EVIL_SCRIPT, "grad_norm", "delta_norm"],
        scalar=EVIL_SCRIPT,
    )
    with ns.open_run(d, name="xss", resume=True) as run:
        run.log_alert(Alert(step=7, layer=EVIL_IMG, rule=EVIL_SCRIPT, value=1.0, message=EVIL_IMG))
        run.set_config({EVIL_SCRIPT: EVIL_IMG})
    return d


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Any]:
    handle = serve(store, port=0, background=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watched:
    """A page with every console error, page error and dialog recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)

    def open(self, base: str, view: str, **params: str) -> None:
        from urllib.parse import urlencode

        self.page.goto(f"{base}#/{view}?{urlencode(params)}")
        self.page.wait_for_selector(f"body[data-rendered={view}]", timeout=30_000)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    w = Watched(context.new_page())
    yield w
    context.close()


def _shot(page: Page, tmp_path: Path, view: str) -> None:
    path = tmp_path / f"dashboard-{view}.png"
    page.wait_for_timeout(200)  # let plotly finish its transitions
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    out = os.environ.get("NETSIGHT_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)


# what each view must show for run "mnist" (written in tests/unit/_server_store.py)
def _check_view(page: Page, view: str) -> None:
    if view == "runs":
        assert page.locator("#runs-table tbody tr").count() == 2
    elif view == "scalars":
        assert page.locator("#scalar-grid .panel").count() == 2
        assert page.locator("#scalar-grid .main-svg").count() >= 2
    elif view in ("grads", "activations"):
        assert page.locator(f"#{view}-heatmap .heat-ylabel").all_text_contents() == LAYERS
        # the canvas holds one opaque pixel per (layer, step) cell, scaled up
        painted = page.evaluate(
            f"""() => {{
                const c = document.querySelector('#{view}-heatmap canvas.heat-canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] === 255;
                return n / (c.width * c.height);
            }}"""
        )
        assert painted > 0.99
        assert page.locator(f"#{view}-lines .main-svg").count() >= 1
        assert page.locator(f"#{view}-bars .bars path").count() == len(LAYERS)
    elif view == "histograms":
        assert page.locator("#hist-heatmap .main-svg").count() >= 1
        assert page.locator("#hist-layer option").count() == len(LAYERS)
    elif view == "backprop":
        assert page.locator("#bp-graph rect").count() == len(TREE)
        fc = page.locator("#bp-graph rect[data-name='fc']")
        assert float(fc.get_attribute("data-value") or "nan") == pytest.approx(2.0**-1 * 300, rel=1e-6)
    elif view == "actmaps":
        figures = page.locator("#am-gallery figure")
        assert figures.count() == 2
        figures.first.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#am-gallery img')].every(i => i.complete)"
        )
        widths = page.eval_on_selector_all("#am-gallery img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths == [8, 8]
    elif view == "explanations":
        assert page.locator("#xp-grid tbody tr").count() == 2
    elif view == "alerts":
        assert page.locator("#alerts-table tbody tr").count() == 2
    elif view == "attention":
        frame = page.frame_locator("#attention-frame")
        assert frame.locator("#a").inner_text() == "attention page"


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_loads_without_console_errors(
    server: Any, watched: Watched, tmp_path: Path, view: str
) -> None:
    watched.open(server.url, view, run="mnist")
    _check_view(watched.page, view)
    _shot(watched.page, tmp_path, view)
    assert watched.errors == []
    assert watched.dialogs == []


def test_attention_page_runs_sandboxed(server: Any, watched: Watched) -> None:
    watched.open(server.url, "attention", run="mnist")
    watched.page.frame_locator("#attention-frame").locator("#a").wait_for()
    frame = next(f for f in watched.page.frames if "/api/text" in f.url)
    frame.wait_for_function("() => document.title === 'ok'")  # its own script ran
    # but in an opaque origin: it can reach neither the dashboard's document nor its API
    assert frame.evaluate(
        "() => { try { return parent.document.title; } catch (e) { return 'blocked'; } }"
    ) == ("blocked")
    assert frame.evaluate("() => window.origin") == "null"
    assert watched.errors == []


def test_user_strings_show_literally_and_never_run(server: Any, watched: Watched) -> None:
    page = watched.page
    for view in VIEWS:
        watched.open(server.url, view, run="xss")
        assert page.locator('img[src="x"]').count() == 0, view
        assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0, view
    watched.open(server.url, "grads", run="xss", metric=EVIL_SCRIPT)
    assert page.locator("#grads-heatmap .heat-ylabel").all_text_contents() == [EVIL_IMG, "ok"]
    assert EVIL_SCRIPT in page.locator("#grads-metric option").all_text_contents()
    assert page.locator("#grads-metric").input_value() == EVIL_SCRIPT
    assert EVIL_SCRIPT in page.locator("#grads-heatmap .heat-title").inner_text()
    # the tooltip shows the hovered layer's name as text
    box = page.locator("#grads-heatmap canvas.heat-canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 4)
    assert page.locator("#grads-heatmap .heat-tip").inner_text().splitlines()[0] == EVIL_IMG
    assert EVIL_SCRIPT in page.locator("#grads-lines .gtitle").text_content()
    watched.open(server.url, "scalars", run="xss")
    assert EVIL_SCRIPT in page.locator("#scalar-grid").inner_text()
    watched.open(server.url, "alerts", run="xss")
    row = page.locator("#alerts-table tbody tr").first
    assert row.locator("td").nth(1).inner_text() == EVIL_IMG
    assert row.locator("td").nth(2).inner_text() == EVIL_SCRIPT
    assert row.locator("td").nth(5).inner_text() == EVIL_IMG
    watched.open(server.url, "backprop", run="xss")
    assert page.locator("#bp-graph text").all_text_contents()[0] == EVIL_IMG
    watched.open(server.url, "compare", run="xss", a="xss", b="mnist")
    assert EVIL_SCRIPT in page.locator("main").inner_text()
    assert watched.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert watched.errors == []


def test_alert_links_to_its_layer_and_step(server: Any, watched: Watched) -> None:
    page = watched.page
    watched.open(server.url, "alerts", run="mnist")
    page.evaluate("() => { delete document.body.dataset.rendered; }")
    page.locator("#alerts-table a.layer-link", has_text="features.0").click()
    page.wait_for_selector("body[data-rendered=grads]")
    assert page.locator("#grads-layer").input_value() == "features.0"
    assert page.locator("#grads-lines").get_attribute("data-layer") == "features.0"
    assert page.locator("#grads-bars").get_attribute("data-step") == "120"
    # the dead-units alert goes to the activation statistics
    watched.open(server.url, "alerts", run="mnist")
    page.evaluate("() => { delete document.body.dataset.rendered; }")
    page.locator("#alerts-table a.layer-link", has_text="fc").click()
    page.wait_for_selector("body[data-rendered=activations]")
    assert page.locator("#activations-layer").input_value() == "fc"
    assert watched.errors == []


def test_clicking_a_heatmap_row_shows_that_layers_lines(server: Any, watched: Watched) -> None:
    page = watched.page
    watched.open(server.url, "grads", run="mnist")
    box = page.locator("#grads-heatmap canvas.heat-canvas").bounding_box()
    assert box is not None
    # rows run top to bottom in module order: the last row is fc; click it at about step 150
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 7 / 8)
    page.wait_for_selector("#grads-lines[data-layer='fc']")
    step = int(page.locator("#grads-bars").get_attribute("data-step") or "-1")
    assert 130 <= step <= 170
    assert "layer=fc" in page.url
    assert watched.errors == []


def test_live_update_arrives_without_reload(store: Path, server: Any, watched: Watched) -> None:
    page = watched.page
    run = ns.open_run(store, name="live")
    layers = ["a", "b"]
    run.log({"loss": 1.0}, step=0)
    run.log_layers(0, layers, ["grad_norm"], np.array([[1.0], [2.0]]))
    run.flush()
    watched.open(server.url, "scalars", run=run.name)
    page.wait_for_selector("#live.on")
    page.evaluate("() => { window.__sameDocument = true; }")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        step = 1
        while not stop.is_set():
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.log_layers(step, layers, ["grad_norm"], np.array([[1.0], [2.0]]) / step)
            written.append(step)
            step += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(written) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        target = written[-1]
        page.wait_for_function(
            f"() => Number(document.querySelector('#scalar-grid .panel').dataset.lastStep) >= {target}",
            timeout=30_000,
        )
        assert int(page.locator("#run-step").get_attribute("data-step") or "0") >= target
        # the gradient-flow view follows the writer too
        page.evaluate("() => { location.hash = location.hash.replace('#/scalars', '#/grads'); }")
        page.wait_for_selector("body[data-rendered=grads]")
        time.sleep(0.3)
        target = written[-1]
        page.wait_for_function(
            f"() => Number(document.getElementById('run-step').dataset.step) >= {target}", timeout=30_000
        )
    finally:
        stop.set()
        thread.join()
    run.close()
    # the run's new status reaches the runs list by the event stream as well
    page.evaluate("() => { location.hash = '#/runs'; }")
    page.wait_for_selector(f"#runs-table tr[data-run='{run.name}'] .badge.finished", timeout=30_000)
    assert page.evaluate("() => window.__sameDocument") is True
    assert watched.errors == []


def test_token_flow_in_the_browser(store: Path, browser: Browser) -> None:
    token = secrets.token_urlsafe(16)
    handle = serve(store, port=0, token=token, background=True)
    assert handle is not None
    try:
        context = browser.new_context()
        w = Watched(context.new_page())
        response = w.page.goto(handle.url.split("?")[0])
        assert response is not None
        assert response.status == 401
        w.errors.clear()  # the refused page logs its 401 once
        w.open(handle.url, "actmaps", run="mnist")  # handle.url carries ?token=...
        page = w.page
        page.wait_for_function(
            "() => [...document.querySelectorAll('#am-gallery img')].every(i => i.complete)"
        )
        assert page.eval_on_selector_all("#am-gallery img", "imgs => imgs.map(i => i.naturalWidth)") == [8, 8]
        page.wait_for_selector("#live.on")  # the event stream is authorised by the cookie too
        assert w.errors == []
        context.close()
    finally:
        handle.stop()
