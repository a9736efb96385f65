"""Progress bars: automatic by default (only for long work, only where tqdm draws), forced on, or off."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import netsight as ns
from netsight import _progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """stderr as a terminal. Set inside each test: pytest puts its own capture back on sys.stderr
    when a test's call phase starts, over what a fixture set."""
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    return term


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))


def test_false_values_mean_no_bar_and_true_a_bar_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _terminal(monkeypatch)
    for off in (False, 0, np.False_):
        assert _progress.progress_bar(10, "x", off) is None
    assert _progress.progress_bar(0, "x", True) is None  # nothing to do, no bar
    on = _progress.progress_bar(10, "now", True)
    assert on is not None
    on.update(1)
    on.close()
    assert "now" in terminal.getvalue()


def test_auto_bars_appear_only_once_work_has_run_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _terminal(monkeypatch)
    quick = _progress.progress_bar(5, "quick", None)
    quick.update(5)
    quick.close()
    assert quick.bar is None  # done before the delay: tqdm never even created
    assert terminal.getvalue() == ""

    monkeypatch.setattr(_progress, "AUTO_AFTER", 0.05)
    slow = _progress.progress_bar(5, "slow", None)
    slow.update(1)
    assert slow.bar is None
    time.sleep(0.3)
    slow.update(1)  # past the delay: the bar appears, counting the work already done
    assert slow.bar is not None
    assert slow.bar.n == 2
    slow.close()
    assert "slow" in terminal.getvalue()


def test_auto_bars_stay_off_where_output_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()  # a log file: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(_progress, "AUTO_AFTER", 0.0)
    bar = _progress.progress_bar(5, "quiet", None)
    bar.update(5)
    bar.close()
    assert log.getvalue() == ""


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("occlusion", {"window": 4}),
        ("integrated_gradients", {"steps": 8}),
        ("score_cam", {}),
        ("smoothgrad", {"samples": 4}),
        ("expected_gradients", {"samples": 4}),
        ("kernel_shap", {"features": "grid", "grid": 2}),
        ("rise", {"n_masks": 16}),
        ("saliency", {}),
    ],
)
def test_every_pass_of_a_method_follows_its_progress_setting(
    method: str, opts: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``progress=False`` draws nothing, not even for a method's inner passes (reference scores, the
    predicted class); ``None`` draws once the work outlasts the delay (here 0 s)."""
    terminal = _terminal(monkeypatch)
    monkeypatch.setattr(_progress, "AUTO_AFTER", 0.0)
    model, x = _model(), torch.rand(2, 1, 8, 8)
    ns.explain(model, x, target=1, method=method, progress=False, **opts)
    assert terminal.getvalue() == ""
    ns.explain(model, x, target=1, method=method, progress=None, **opts)
    assert "sample" in terminal.getvalue()  # a bar over the perturbed or interpolated samples


def test_methods_without_a_loop_take_the_option_too() -> None:
    from netsight.explain import get_method

    fast = [n for n in ns.list_methods() if "progress" not in get_method(n).fn.__code__.co_varnames]
    assert fast  # attention_rollout and grad_attention run no chunked loop
    model, x = _model(), torch.rand(2, 1, 8, 8)
    ns.explain(model, x, target=1, method="saliency", progress=False)
