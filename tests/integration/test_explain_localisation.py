"""Localisation: a CNN trained to tell shapes apart on noise; its maps must point at the shape.

A synthetic dataset where the class is the kind of shape (filled square, hollow square, plus sign)
drawn at a random place on Gaussian noise; the shape's box is known. The CNN has no biases (so a
constant background gives no activation) and averages its last map (so every position's evidence
counts in training, and background responses are unlearned). Grad-CAM and integrated gradients
must put at least 60 % of their positive attribution inside the box, while a random map puts about the
box's area fraction there (the measure is not trivially high).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netsight as ns

pytestmark = pytest.mark.slow

SIZE, SHAPE = 32, 10


def shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x [n, 1, 32, 32]``, class ``y [n]``, box mask ``[n, 1, 32, 32]``."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn((n, 1, SIZE, SIZE), generator=g)
    y = torch.randint(3, (n,), generator=g)
    pos = torch.randint(0, SIZE - SHAPE + 1, (n, 2), generator=g)
    box = torch.zeros_like(x, dtype=torch.bool)
    square = torch.ones(SHAPE, SHAPE)
    hollow = square.clone()
    hollow[3:-3, 3:-3] = 0
    plus = torch.zeros(SHAPE, SHAPE)
    plus[3:7, :] = 1
    plus[:, 3:7] = 1
    kinds = [square, hollow, plus]
    for i in range(n):
        r, c = int(pos[i, 0]), int(pos[i, 1])
        x[i, 0, r : r + SHAPE, c : c + SHAPE] += kinds[int(y[i])]
        box[i, 0, r : r + SHAPE, c : c + SHAPE] = True
    return x, y, box


class ShapeCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1, bias=False),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, y, _ = shapes(1200, seed=0)
    model = ShapeCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 50):
            idx = perm[i : i + 50]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    xt, yt, bt = shapes(32, seed=1)
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.9, f"the fixture CNN did not learn the shapes (accuracy {acc:.2f})"
    return model, xt, yt, bt


def inside_fraction(maps: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Per sample: positive attribution inside the box / all positive attribution."""
    pos = maps.clamp(min=0).sum(dim=1, keepdim=True)
    return (pos * box).sum(dim=(1, 2, 3)) / pos.sum(dim=(1, 2, 3)).clamp_min(1e-12)


# Grad-CAM at the first ReLU: its 3 x 3 receptive field keeps the map on the 10-pixel box. At the default
# layer (the last conv block's output before the global pooling, `features`) the map is the CAM of the
# classifier's evidence, and the plus and hollow square are partly recognised by what is missing (both
# are subsets of the filled square): per class about 0.8-0.96 (filled), 0.6 (hollow) and 0.02 (plus) inside
# the box, 0.48 on average; that figure is printed, not asserted.
@pytest.mark.parametrize(
    ("method", "options"), [("grad_cam", {"layer": "features.1"}), ("integrated_gradients", {"steps": 32})]
)
def test_maps_point_at_the_shape(trained, method, options, capsys) -> None:
    model, x, y, box = trained
    ex = ns.explain(model, x, target=y, method=method, **options)
    frac = inside_fraction(ex.attributions, box).mean().item()
    rand = inside_fraction(torch.rand(x.shape, generator=torch.Generator().manual_seed(2)), box).mean().item()
    area = SHAPE * SHAPE / SIZE / SIZE
    extra = ""
    if method == "grad_cam":
        default = ns.explain(model, x, target=y, method=method)
        assert default.layer == "features"  # the last spatial output: the conv block before the pooling
        per_sample = inside_fraction(default.attributions, box)
        per_class = ", ".join(f"{per_sample[y == c].mean().item():.2f}" for c in range(3))
        mean = per_sample.mean().item()
        extra = f"; at the default layer {default.layer!r}: {mean:.2f} (per class {per_class})"
    with capsys.disabled():
        print(
            f"\n[localisation] {method} {options}: {frac:.2f} inside the box{extra}; random map {rand:.3f}; "
            f"area {area:.3f}"
        )
    assert frac >= 0.6
    assert abs(rand - area) < 0.02
