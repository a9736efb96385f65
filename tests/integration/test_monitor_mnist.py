"""A healthy small CNN trained on the MNIST digits raises no alert, and the run holds what the dashboard
draws: per-layer series, histograms on the logarithmic schedule, activation maps, the module tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.data import load_mnist
from netsight.monitor.schedule import LogSchedule


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.mark.slow
def test_healthy_mnist_cnn_raises_no_alert(tmp_path: Path, untouched: type) -> None:
    x, y = load_mnist()
    x = (x - 0.1307) / 0.3081
    model = CNN().train()
    u = untouched(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps, batch = 80, 32
    g = torch.Generator().manual_seed(0)
    with (
        ns.open_run(tmp_path, name="mnist") as run,
        ns.watch(model, optimizer=opt, run=run, probe=x[:4], dead_window=20) as mon,
    ):
        for step in range(steps):
            idx = torch.randint(0, 9000, (batch,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"loss": loss}, step=step)
        with torch.no_grad():
            model.eval()
            acc = (model(x[9000:]).argmax(1) == y[9000:]).float().mean().item()
            model.train()
    assert acc > 0.8  # it did learn: a healthy run
    assert mon.alerts == []
    assert ns.hooks_on(model) == {}
    assert u.state.differences(model) == []

    r = ns.store.open(tmp_path).run("mnist")
    assert r.alerts() == []
    names, s, grad = r.layer_matrix("grad_norm", layers=["features.0", "head.3"])
    assert names == ["features.0", "head.3"]
    assert list(s) == list(range(steps))  # gradient norms every step
    assert np.isfinite(grad).all()
    _, s, act = r.layer_matrix("act_std", layers=["features.2"])
    heavy = LogSchedule()
    want = sorted({t for t in range(steps) if t % 10 == 0 or heavy(t)})
    assert [int(t) for t, v in zip(s, act[0]) if np.isfinite(v)] == want  # full statistics on schedule
    hist_steps, edges, counts = r.histograms("features.0", "grad")
    assert [int(t) for t in hist_steps] == [t for t in range(steps) if heavy(t)]
    assert counts.shape == (len(hist_steps), len(edges) + 1)
    assert counts.sum(axis=1) == pytest.approx(8 * 1 * 3 * 3 + 8)  # every weight and bias gradient
    maps = r.images(kind="activation_map")
    assert {m.layer for m in maps} == {"features.0", "features.4"}
    tree = {n["name"]: n for n in r.module_tree()}
    assert tree["features.0"]["out_shape"] == [batch, 8, 28, 28]
    assert tree["head.1"]["params"] == 16 * 7 * 7 * 32 + 32
