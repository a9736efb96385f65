"""Progress bars: automatic by default (only for long work, only on a terminal), or forced on or off."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import netsight as ns
from netsight import _progress


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_three_settings() -> None:
    assert _progress.progress_bar(10, "x", False) is None
    assert _progress.progress_bar(0, "x", True) is None  # nothing to do, no bar
    on = _progress.progress_bar(10, "x", True)
    assert on is not None
    assert not on.disable
    assert on.delay == 0.0
    on.close()


def test_auto_bars_appear_on_a_terminal_only_for_long_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import time

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    quick = _progress.progress_bar(5, "quick", None)
    assert quick is not None
    assert not quick.disable
    assert quick.delay == _progress.AUTO_AFTER
    quick.update(5)
    quick.close()
    assert "quick" not in term.getvalue()  # done before the delay: never drawn

    monkeypatch.setattr(_progress, "AUTO_AFTER", 0.05)
    slow = _progress.progress_bar(5, "slow", None)
    time.sleep(0.1)
    slow.update(1)
    slow.close()
    assert "slow" in term.getvalue()


def test_auto_bars_stay_off_where_output_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    log = io.StringIO()  # a log file: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(_progress, "AUTO_AFTER", 0.0)
    bar = _progress.progress_bar(5, "quiet", None)
    assert bar is not None
    assert bar.disable
    bar.update(5)
    bar.close()
    assert log.getvalue() == ""


def test_explain_draws_a_bar_when_asked_and_none_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    model, x = _model(), torch.rand(2, 1, 8, 8)
    ns.explain(model, x, target=1, method="occlusion", window=4, progress=True)
    err = capsys.readouterr().err
    assert "occlusion" in err
    assert "sample" in err  # tqdm's unit: the perturbed samples
    ns.explain(model, x, target=1, method="occlusion", window=4)  # default: automatic
    ns.explain(model, x, target=1, method="occlusion", window=4, progress=False)
    assert capsys.readouterr().err == ""
