"""Selectors, errors, budgets, wrappers, autocast, reductions and feature grids of the capture API."""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import netsight as ns
from netsight.capture import glob_match, reducers, resolve
from netsight.errors import ArgumentError, CaptureBudgetWarning, CaptureError, SelectorError


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()),
        nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    )


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("features.*", "features.0", True),
        ("features.*", "features.0.conv", False),
        ("features.**", "features.0.conv", True),
        ("**.conv1", "layer1.0.conv1", True),
        ("**.conv1", "conv1", True),
        ("blocks.*.attn", "blocks.11.attn", True),
        ("blocks.*.attn", "blocks.11.attn.qkv", False),
        ("layer[12].0", "layer2.0", True),
        ("layer?.0", "layer3.0", True),
    ],
)
def test_glob_is_segment_wise(pattern: str, name: str, hit: bool) -> None:
    assert glob_match(pattern, name) is hit


def test_selector_kinds() -> None:
    m = _net()
    assert [n for n, _ in resolve(m, None)] == ["0.0", "0.1", "1.0", "1.1", "2", "3"]
    assert [n for n, _ in resolve(m, nn.Conv2d)] == ["0.0", "1.0"]
    assert [n for n, _ in resolve(m, "*.1")] == ["0.1", "1.1"]
    assert [n for n, _ in resolve(m, m[3])] == ["3"]
    assert [n for n, _ in resolve(m, lambda n, mod: n.startswith("1"))] == ["1", "1.0", "1.1"]
    assert [n for n, _ in resolve(m, ["3", nn.ReLU])] == ["0.1", "1.1", "3"]


def test_selector_miss_lists_nearest_names() -> None:
    m = _net()
    with pytest.raises(SelectorError, match=r"'0\.2' matches no module.*Nearest: .*0\.1"):
        resolve(m, "0.2")
    with pytest.raises(SelectorError, match="LSTM matches no module"):
        resolve(m, nn.LSTM)
    with pytest.raises(ArgumentError, match="layers: cannot select"):
        resolve(m, 3)  # type: ignore[arg-type]
    with pytest.raises(SelectorError, match="empty list"):
        resolve(m, [])


def test_grads_under_no_grad_says_what_to_do() -> None:
    m = _net()
    with torch.no_grad(), pytest.raises(CaptureError, match="outside the no_grad block"):
        ns.capture(m, grads=True).__enter__()
    assert ns.hooks_on(m) == {}
    cap = ns.capture(m, grads=True)
    with cap, torch.inference_mode(), pytest.raises(CaptureError, match="gradients disabled"):
        m(torch.randn(1, 1, 8, 8))
    assert ns.hooks_on(m) == {}


def test_compiled_model_is_refused_clearly() -> None:
    m = _net()
    compiled = torch.compile(m)
    with pytest.raises(CaptureError, match="_orig_mod"):
        ns.capture(compiled)
    # the original module is fine
    with ns.capture(compiled._orig_mod) as cap:  # type: ignore[union-attr]
        compiled._orig_mod(torch.randn(1, 1, 8, 8))  # type: ignore[operator]
    assert len(cap) == 6


def test_data_parallel_names_have_no_module_prefix() -> None:
    m = _net()
    dp = nn.DataParallel(m)
    x = torch.randn(2, 1, 8, 8)
    with ns.capture(dp, layers="module.3", grads=True) as cap:
        dp(x).sum().backward()
    assert cap.names == ["3"]
    assert cap["module.3"].activation.shape == (2, 3)


def test_distributed_data_parallel_single_process() -> None:
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(d, 'pg')}", rank=0, world_size=1)
        try:
            m = _net()
            ddp = nn.parallel.DistributedDataParallel(m)
            with ns.capture(ddp, layers=nn.Conv2d, grads=True) as cap:
                ddp(torch.randn(2, 1, 8, 8)).sum().backward()
            assert cap.names == ["0.0", "1.0"]
            assert cap["1.0"].grad is not None
        finally:
            dist.destroy_process_group()
    assert ns.hooks_on(m) == {}


def test_transformer_encoder_layers_match_explicit_calls() -> None:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        h0 = enc.layers[0](x)
        h1 = enc.layers[1](h0)
    with ns.capture(enc, layers="layers.*") as cap, torch.no_grad():
        enc(x)
    torch.testing.assert_close(cap["layers.0"].activation, h0, atol=1e-6, rtol=0)
    torch.testing.assert_close(cap["layers.1"].activation, h1, atol=1e-6, rtol=0)


def test_autocast_bf16_captures_low_precision_outputs_and_grads() -> None:
    m = _net()
    x = torch.randn(2, 1, 8, 8)
    with ns.capture(m, layers=nn.Conv2d, grads=True, reduce="stats", keep_full=True) as cap:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        out.float().sum().backward()
    rec = cap["1.0"]
    assert rec.activation.dtype == torch.bfloat16
    assert rec.grad is not None
    torch.testing.assert_close(reducers.stats(rec.activation), rec.reduced["stats"], rtol=1e-5, atol=1e-6)


def test_budget_is_never_exceeded_and_warns_once() -> None:
    m = _net()
    x = torch.randn(8, 1, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ns.capture(m, grads=True, max_bytes=3000) as cap:
            m(x).sum().backward()
    budget = [w for w in caught if issubclass(w.category, CaptureBudgetWarning)]
    assert len(budget) == 1
    assert "max_bytes" in str(budget[0].message)
    assert budget[0].filename == __file__  # the user's line, not torch's module call inside a hook
    assert cap.over_budget
    assert 0 < cap.nbytes <= 3000
    # layers past the budget keep statistics instead of full tensors
    dropped = [n for n in cap.names if cap[n].activation is None]
    assert dropped
    assert all("stats" in cap[n].reduced for n in dropped)


def test_reduce_only_keeps_no_full_tensors_and_stacks_in_one_tensor() -> None:
    m = _net()
    x = torch.randn(4, 1, 8, 8)
    with ns.capture(m, reduce="stats", grads=True) as cap:
        m(x).sum().backward()
    assert cap.nbytes == 0
    assert cap["0.0"].activation is None
    labels, table = cap.stacked("stats")
    assert labels == cap.names
    assert table.shape == (6, len(reducers.STAT_NAMES))
    glabels, gtable = cap.stacked("stats", grad=True)
    assert glabels == cap.names
    assert gtable.shape == table.shape
    # independent: the conv's output recomputed by hand
    want = reducers.stats(m[0][0](x))
    torch.testing.assert_close(table[0], want)
    assert cap["0.1"].stat("zero_frac") > 0
    with pytest.raises(KeyError, match="unknown statistic"):
        cap["0.1"].stat("median")


def test_to_and_dtype_cast_kept_tensors() -> None:
    m = _net()
    with ns.capture(m, layers="3", to="cpu", dtype=torch.float16) as cap:
        out = m(torch.randn(2, 1, 8, 8))
    assert cap["3"].activation.dtype == torch.float16
    torch.testing.assert_close(cap["3"].activation.float(), out.detach(), atol=1e-2, rtol=1e-2)


def test_bad_arguments_name_the_argument() -> None:
    m = _net()
    with pytest.raises(ArgumentError, match="max_bytes"):
        ns.capture(m, max_bytes=-1)
    with pytest.raises(ArgumentError, match="keep_full"):
        ns.capture(m, keep_full=False)
    with pytest.raises(ArgumentError, match="dtype"):
        ns.capture(m, dtype=torch.int8)
    with pytest.raises(ArgumentError, match=r"model: expected a torch\.nn\.Module"):
        ns.capture("resnet")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="share the name"):
        ns.capture(m, reduce=["stats", "stats"])


def test_missing_record_messages() -> None:
    m = _net()
    with ns.capture(m, layers=["3", "0.0"]) as cap:
        pass
    with pytest.raises(KeyError, match="did not run"):
        cap["3"]
    with pytest.raises(KeyError, match="not in this capture"):
        cap["nope"]


def test_clear_and_reuse_across_steps() -> None:
    m = _net()
    with ns.capture(m, reduce="stats") as cap:
        m(torch.randn(1, 1, 8, 8))
        assert len(cap) == 6
        cap.clear()
        assert len(cap) == 0
        m(torch.randn(1, 1, 8, 8))
        assert len(cap) == 6


def _decode_png(data: bytes) -> np.ndarray[Any, Any]:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def test_feature_grid_tiles_are_the_normalised_channels() -> None:
    act = torch.randn(2, 5, 3, 4)
    act[1, 2] *= 10  # strongest channel of sample 1
    grid = ns.render.feature_grid(act, sample=1, ncols=3, pad=1, cmap=None)
    assert grid.shape == (2 * 4 + 1, 3 * 5 + 1)
    for c in range(5):
        r, q = divmod(c, 3)
        tile = grid[1 + r * 4 : 1 + r * 4 + 3, 1 + q * 5 : 1 + q * 5 + 4]
        ch = act[1, c]
        want = ((ch - ch.min()) / (ch.max() - ch.min()) * 255).round().to(torch.uint8)
        assert torch.equal(tile, want)
    top = ns.render.feature_grid(act, sample=1, k=1, cmap=None, pad=0)
    ch = act[1, 2]
    assert torch.equal(top, ((ch - ch.min()) / (ch.max() - ch.min()) * 255).round().to(torch.uint8))
    rgb = ns.render.feature_grid(act, cmap="viridis")
    png = ns.render.to_png(rgb)
    assert np.array_equal(_decode_png(png), rgb.numpy())


def test_feature_grid_from_a_single_forward_capture() -> None:
    m = _net()
    x = torch.randn(1, 1, 8, 8)
    calls = {"n": 0}
    conv = m[0][0]
    original = conv.forward

    def counting(t: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return original(t)

    conv.forward = counting  # type: ignore[method-assign]
    try:
        with ns.capture(m, layers="0.0") as cap:
            m(x)
        grid = ns.render.feature_grid(cap["0.0"], cmap=None)
    finally:
        del conv.forward
    assert calls["n"] == 1
    assert grid.dtype == torch.uint8
    with pytest.raises(ArgumentError, match="conv activation"):
        ns.render.feature_grid(torch.randn(3))
