"""No hook left and identical state after a capture, in every mode, also when something raises."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

import netsight as ns
from netsight.capture import reducers
from netsight.errors import CaptureBudgetWarning

MODES: dict[str, dict[str, Any]] = {
    "full": {},
    "grads": {"grads": True},
    "stats": {"reduce": "stats", "grads": True},
    "hist+topk": {"reduce": [reducers.Histogram(reducers.log_edges()), "topk"], "grads": True},
    "budget": {"grads": True, "max_bytes": 2_000},
    "cpu-half": {"to": "cpu", "dtype": torch.float16, "grads": True},
    "live": {"detach": False},
}


class Boom(RuntimeError):
    pass


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise Boom("raised inside forward")
        return x


def _model() -> nn.Module:
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        Exploding(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )
    # a mixture of flags the capture must keep exactly
    m.train()
    m[1].eval()
    m[0].bias.requires_grad_(False)
    return m


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("where", ["normal", "block_raises", "forward_raises"])
def test_no_hook_left_and_state_restored(mode: str, where: str, untouched: Any) -> None:
    m = _model()
    u = untouched(m)
    x = torch.randn(2, 3, 6, 6)
    opts = MODES[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureBudgetWarning)
        if where == "normal":
            with ns.capture(m, **opts) as cap:
                out = m(x)
                if opts.get("grads"):
                    out.sum().backward()
            assert len(cap.names) == 6
        elif where == "block_raises":

            def block() -> None:
                with ns.capture(m, **opts):
                    m(x)
                    raise Boom("raised in the block")

            with pytest.raises(Boom):
                block()
        else:
            m[3].armed = True
            try:
                with pytest.raises(Boom), ns.capture(m, **opts):
                    m(x)
            finally:
                m[3].armed = False
    # BatchNorm running stats change by design of train mode; everything else must be as it was
    m.zero_grad(set_to_none=True)
    for name, p in m.named_parameters():
        u.params[name] = p.detach().clone()
    u.check()
    assert all(p.grad is None for p in m.parameters())


def test_hooks_removed_when_registration_fails_midway(untouched: Any) -> None:
    m = _model()
    u = untouched(m)
    cap = ns.capture(m, layers=["0", "5"])
    # simulate a failure during __enter__ after the first hook: a selected module that refuses hooks
    bad = cap._selected[1][1]
    original = bad.register_forward_hook

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Boom("cannot hook")

    bad.register_forward_hook = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(Boom), cap:
            pass
    finally:
        del bad.register_forward_hook
    assert bad.register_forward_hook.__func__ is original.__func__  # type: ignore[attr-defined]
    u.check()


def test_hooks_patch_and_flags_are_undone() -> None:
    m = _model()
    before = ns.capture.__module__
    with ns.Hooks(m) as h:
        h.patch(m[2], "inplace", False)
        h.patch(m[3], "extra", 5)
        h.set_training(m, False)
        h.set_requires_grad(m[5].weight, False)
        assert m[2].inplace is False
        assert m[3].extra == 5
    assert m[2].inplace is True
    assert not hasattr(m[3], "extra")
    assert m.training
    assert not m[1].training
    assert m[5].weight.requires_grad
    assert before == ns.capture.__module__
