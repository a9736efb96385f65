"""The attention pictures: HTML views (escaping, self-contained, the data they carry) and image grids."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import netsight as ns
from netsight.attention import html as ahtml
from netsight.attention.pictures import head_grid, patch_overlay, token_map
from netsight.errors import ArgumentError

EVIL = ['<script>alert("x")</script>', "a&b", "</script><b>", '"quoted"', "plain"]


def _maps(t: int = 5):
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    return ns.attention(enc, torch.randn(1, t, 16), tokens=[f"t{i}" for i in range(t)])


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="ns-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_head_view_is_self_contained_escaped_and_carries_the_maps() -> None:
    maps = _maps()
    page = ahtml.head_view(maps, EVIL)
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "<script src" not in page
    assert '<link rel="stylesheet"' not in page
    for tok in EVIL:
        if tok != "plain":
            assert tok not in page  # never raw
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("<script") == 2  # the JSON data block and the inline script, nothing injected
    data = _data(page)
    want = torch.stack([maps[n][0] for n in maps.names])
    got = torch.tensor(data["attn"])
    assert got.shape == want.shape == (2, 4, 5, 5)
    assert (got - want).abs().max() <= 5e-5  # rounded to 4 decimals
    assert data["colours"][:2] == list(ahtml.HEAD_COLOURS[:2])
    assert page.count('data-side="q"') == 5
    assert page.count('data-side="k"') == 5
    for name in maps.names:
        assert f">{name}</option>" in page


def test_head_view_from_a_tensor_and_its_errors() -> None:
    a = torch.softmax(torch.randn(3, 2, 4, 4), -1)
    page = ahtml.head_view(a, ["a", "b", "c", "d"], layer=2)
    assert '<option value="2" selected>layer 2</option>' in page
    with pytest.raises(ArgumentError, match="tokens"):
        ahtml.head_view(a, ["a"])
    with pytest.raises(ArgumentError, match="layer"):
        ahtml.head_view(a, None, layer=5)
    rows = ns.attention(
        nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1, enable_nested_tensor=False
        ).eval(),
        torch.randn(1, 4, 8),
        reduce="cls",
    )
    with pytest.raises(ArgumentError, match="self-attention"):
        ahtml.head_view(rows)


def test_token_view_shades_by_relevance_and_escapes() -> None:
    rel = torch.tensor([[0.0, 1.0, 0.5, -1.0, 0.25], [1.0, 0.0, 0.0, 0.0, 0.0]])
    page = ahtml.token_view(EVIL, rel, labels=["<one>", "two"])
    assert "&lt;one&gt;" in page
    assert "<one>" not in page
    for tok in EVIL[:4]:
        assert tok not in page
    alphas = [float(a) for a in re.findall(r"rgba\(\d+,\d+,\d+,([0-9.]+)\)", page)]
    assert alphas[:5] == [0.0, 1.0, 0.5, 1.0, 0.25]
    assert "rgba(40,90,220,1.000)" in page  # the negative value is blue
    assert "<script" not in page
    with pytest.raises(ArgumentError, match="tokens"):
        ahtml.token_view(["a"], rel)


def test_head_grid_layout_and_colours() -> None:
    maps = _maps()
    img = head_grid(maps, cell=10, gap=2)
    assert img.dtype == torch.uint8
    assert img.shape == (2 * 12 + 2, 4 * 12 + 2, 3)
    assert (img[:2] == 255).all()  # the gap is white
    one = maps[maps.names[0]][0, 0]
    from netsight.render import heatmap

    cell = torch.nn.functional.interpolate(one[None, None], size=(10, 10), mode="nearest-exact")[0, 0]
    assert torch.equal(img[2:12, 2:12], heatmap(cell, "viridis"))
    assert maps.grid(cell=8).shape == (2 * 10 + 2, 4 * 10 + 2, 3)


def test_token_map_and_overlay_for_a_vit() -> None:
    rel = torch.arange(17.0)[None].repeat(2, 1)
    raw, up = token_map(rel, (32, 32))
    assert raw.shape == (2, 1, 4, 4)
    assert up.shape == (2, 1, 32, 32)
    assert torch.equal(raw[0, 0], torch.arange(1.0, 17.0).reshape(4, 4))
    pic = patch_overlay(torch.rand(2, 3, 32, 32), rel)
    assert pic.shape == (2, 32, 32, 3)
    assert pic.dtype == torch.uint8
