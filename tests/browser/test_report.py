"""The demo's HTML report in headless Chromium: no console error, no request, the heatmap is drawn."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import netsight as ns
import netsight.demo as nd
from netsight.render.report import write_report

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
HOSTILE = '"><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems, requests


def test_demo_report_opens_with_the_gradient_flow_heatmap(browser, tmp_path: Path) -> None:
    result = nd.run(
        epochs=1, store=tmp_path / "s", serve=False, train_size=384, test_size=128, explain_images=2,
        probes=1, methods=("saliency", "grad_cam"), report=tmp_path / "report.html", progress=False,
    )  # fmt: skip
    page, problems, requests = _open(browser, tmp_path / "report.html")
    heat = page.locator("#gradient-flow-heatmap")
    assert heat.is_visible()
    box = heat.bounding_box()
    assert box is not None
    assert box["width"] > 300
    assert box["height"] > 40
    # the cells are an inline PNG that the browser decoded: draw the SVG on a canvas and read it back
    painted = page.evaluate(
        """async () => {
            const svg = document.querySelector('#gradient-flow-heatmap');
            const cells = svg.querySelector('image');
            const x = +cells.getAttribute('x'), y = +cells.getAttribute('y');
            const w = +cells.getAttribute('width'), h = +cells.getAttribute('height');
            const blob = new Blob([new XMLSerializer().serializeToString(svg)], {type: 'image/svg+xml'});
            const img = new Image();
            img.src = URL.createObjectURL(blob);
            await img.decode();
            const c = document.createElement('canvas');
            c.width = svg.width.baseVal.value; c.height = svg.height.baseVal.value;
            const ctx = c.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(x, y, w, h).data;
            const colours = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) {
                colours.add([d[i], d[i + 1], d[i + 2], d[i + 3]].join(','));
            }
            return colours.size;
        }"""
    )
    assert painted > 3  # many distinct colours: a drawn heatmap, not an empty box
    rows = page.locator("#gradient-flow-heatmap text.l").all_text_contents()
    r = ns.store.open(result.store).run(result.run)
    names, _, values = r.layer_matrix("grad_norm")
    with_grads = [n for n, row in zip(names, values, strict=True) if np.isfinite(row).any()]
    assert with_grads
    assert [n for n in with_grads if n not in rows] == [], rows
    imgs = page.locator("#explanations img")
    assert imgs.count() == 2 * 3  # inputs + two methods, two images
    assert all(page.evaluate("(el) => el.naturalWidth", el.element_handle()) > 0 for el in imgs.all())
    assert problems == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests


def test_user_strings_are_escaped(browser, tmp_path: Path) -> None:
    store = tmp_path / "s"
    with ns.open_run(store, name="hostile", config={"note": HOSTILE}) as run:
        run.log({HOSTILE: 1.0}, step=1)
        run.log_layers(1, [HOSTILE, "ok"], ["grad_norm"], np.array([[1.0], [2.0]], dtype=np.float32))
        run.log_layers(2, [HOSTILE, "ok"], ["grad_norm"], np.array([[3.0], [4.0]], dtype=np.float32))
        run.log_alert(ns.store.Alert(step=2, layer=HOSTILE, rule=HOSTILE, value=3.0, message=HOSTILE))
    out = write_report(store, "hostile", tmp_path / "r.html")
    page, problems, _ = _open(browser, out)
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("img[src=x]").count() == 0
    assert HOSTILE in page.locator("#alerts").inner_text()
    assert problems == []
