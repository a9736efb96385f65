"""The memory budget holds on a real model: every layer of ResNet-18 at batch 64 under 50 MB."""

from __future__ import annotations

import warnings

import pytest
import torch

import netsight as ns
from netsight.errors import CaptureBudgetWarning


@pytest.mark.slow
def test_resnet18_batch64_every_layer_stays_under_budget() -> None:
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(64, 3, 112, 112)
    budget = 50_000_000
    peak = 0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ns.capture(m, grads=True, max_bytes=budget) as cap:
            # measure what the capture holds after every module, forward and backward
            def watch(*_: object) -> None:
                nonlocal peak
                peak = max(peak, cap.nbytes)

            with ns.Hooks(m) as h:
                for _, mod in m.named_modules():
                    h.forward(mod, watch)
                out = m(x)
            out[:, 0].sum().backward()
            peak = max(peak, cap.nbytes)
    held = sum(
        t.numel() * t.element_size()
        for name in cap.names
        for rec in cap[name].calls
        for t in (rec.activation, rec.grad)
        if isinstance(t, torch.Tensor)
    )
    assert held == cap.nbytes  # the capture's own count is the bytes really held
    assert peak <= budget
    assert held <= budget
    assert sum(issubclass(w.category, CaptureBudgetWarning) for w in caught) == 1
    # full tensors until the budget, statistics after it, for every layer
    assert all(
        rec.activation is not None or "stats" in rec.reduced for name in cap.names for rec in cap[name].calls
    )
    assert len(cap.names) == len([n for n, mod in m.named_modules() if n and not list(mod.children())])
