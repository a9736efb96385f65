"""Small models shared by the explain tests (random weights, deterministic)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-bn-relu(inplace) x2 (no downsampling), pool, linear: like the conftest SmallCNN."""

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


def calibrated(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    """Give a random network realistic BatchNorm statistics (a few train-mode forwards), then eval.

    With the default running statistics (mean 0, variance 1) a random ResNet is almost linear and
    every attribution method looks exact; calibrated, it is as non-linear as a trained one.
    """
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(shape, generator=g))
    return model.eval()


def resnet18() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return calibrated(torchvision.models.resnet18(num_classes=10), (8, 3, 32, 32))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return calibrated(TinyCNN(), (8, 3, 16, 16))


def without_inplace(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ReLUs are out-of-place (what peers' backward hooks need)."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    return m


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max normalisation to [0, 1] (the normalisation both sides get)."""
    flat = x.reshape(x.shape[0], -1).double()
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(x.shape)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double().flatten()
    b = b.double().flatten()
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))
