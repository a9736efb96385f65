"""Hostile strings in every place a run can carry one (the run file's name, image keys and kinds,
histogram kinds, module types, attention keys, metadata), in the dashboard and in the report: they show
as text, nothing runs (no dialog, no injected element), and the report fetches nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from playwright.sync_api import Browser, sync_playwright  # noqa: E402

import netsight as ns  # noqa: E402
from netsight.render import to_png  # noqa: E402
from netsight.render.report import write_report  # noqa: E402
from netsight.server import serve  # noqa: E402
from netsight.store import Alert  # noqa: E402

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)> & ü'
RUN_FILE = '"><img src=x onerror=alert(3)> &amp; ü'  # a run file copied under a hostile name
VIEWS = [
    "runs",
    "scalars",
    "grads",
    "histograms",
    "backprop",
    "actmaps",
    "explanations",
    "alerts",
    "attention",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("escaping")
    import torch

    png = to_png(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with ns.open_run(d, name="hostile", config={SCRIPT: IMG}) as run:
        for step in range(4):
            run.log({SCRIPT: float(step)}, step=step)
            run.log_layers(step, [IMG, SCRIPT], ["grad_norm"], np.array([[1.0 + step], [2.0]], np.float32))
        run.log_histograms(0, SCRIPT, [IMG], torch.tensor([0.0, 1.0]), torch.tensor([[1, 2, 3]]))
        run.log_image(1, f"{SCRIPT}/{IMG}", png, layer=IMG, kind="activation_map", meta={IMG: SCRIPT})
        run.log_image(1, f"{SCRIPT}/0", png, kind="explanation", meta={"label": IMG, "predicted": SCRIPT})
        run.log_image(2, IMG, png, kind=SCRIPT)
        run.log_alert(Alert(step=2, layer=IMG, rule=SCRIPT, value=float("nan"), message=IMG, severity=SCRIPT))
        run.log_text(f"attention/{IMG}", "<p id=a>page</p><script>alert(4)</script>")
        run.log_module_tree(
            [
                {"name": "", "type": SCRIPT, "parent": None, "params": 2, "out_shape": None, "order": -1},
                {"name": IMG, "type": IMG, "parent": "", "params": 1, "out_shape": None, "order": 0},
                {"name": SCRIPT, "type": SCRIPT, "parent": "", "params": 1, "out_shape": None, "order": 1},
            ]
        )
    shutil.copy(d / "hostile.sqlite", d / f"{RUN_FILE}.sqlite")
    return d


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Any]:
    handle = serve(store, port=0, background=True)
    yield handle
    handle.stop()


@pytest.mark.parametrize("run", ["hostile", RUN_FILE])
def test_dashboard_shows_hostile_strings_as_text(server: Any, browser: Browser, run: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        for view in VIEWS:
            page.goto(f"{server.url}#/{view}?{urlencode({'run': run})}")
            page.wait_for_selector(f"body[data-rendered={view}]", timeout=30_000)
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
            assert page.locator("img[src=x]").count() == 0
            assert page.locator("#view script").count() == 0
            if view == "runs":
                shown = page.locator("#runs-table tbody tr").all_inner_texts()
                assert any(RUN_FILE in row for row in shown), shown
                assert page.locator("#run-select option:checked").inner_text() == run
            elif view == "alerts":
                cells = page.locator("#alerts-table tbody td").all_inner_texts()
                assert IMG in cells
                assert SCRIPT in cells
        page.wait_for_timeout(300)
    finally:
        page.close()
    assert dialogs == []


def test_report_shows_hostile_strings_as_text_and_fetches_nothing(
    store: Path, browser: Browser, tmp_path: Path
) -> None:
    out = write_report(store, RUN_FILE, tmp_path / "r.html")
    page = browser.new_page()
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("script").count() == 0
        alerts = page.locator("#alerts td").all_inner_texts()
        assert IMG in alerts
        assert SCRIPT in alerts
        assert SCRIPT in page.locator("#overview th").all_inner_texts()
        assert IMG in page.locator("#overview td").all_inner_texts()
        assert f"attention/{IMG}" in page.locator("#attention h3").all_inner_texts()
    finally:
        page.close()
    assert dialogs == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
