"""Shared fixtures: deterministic seeds, small models, and the hygiene check every suite uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netsight.capture import ModelState, hooks_on


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class SmallCNN(nn.Module):
    """conv-bn-relu(inplace) x2, pool, linear: small, with in-place ReLUs on purpose."""

    def __init__(self, in_ch: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def small_cnn() -> SmallCNN:
    return SmallCNN().eval()


class Untouched:
    """Snapshot a model; ``check()`` asserts no hook is left and every flag is as it was."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = ModelState.of(model)
        self.params = {n: p.detach().clone() for n, p in model.named_parameters()}

    def check(self) -> None:
        assert hooks_on(self.model) == {}, f"hooks left: {hooks_on(self.model)}"
        assert self.state.differences(self.model) == []
        for n, p in self.model.named_parameters():
            assert torch.equal(p.detach(), self.params[n]), f"parameter {n} changed"


@pytest.fixture
def untouched() -> type[Untouched]:
    return Untouched
