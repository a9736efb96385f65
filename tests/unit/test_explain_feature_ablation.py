"""feature_ablation against Captum's FeatureAblation (the oracle) on images with a cell mask, tabular rows
and token ids, and against the definition by hand."""

from __future__ import annotations

import pytest
import torch
from captum.attr import FeatureAblation
from torch import nn

import netsight as ns


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 4)
    ).eval()


def test_images_with_a_cell_mask_match_captum(untouched) -> None:
    model = _cnn()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    cells = (torch.arange(12)[:, None] // 4) * 3 + torch.arange(12)[None, :] // 4  # 9 cells of 4x4
    mask = cells[None, None].expand(1, 3, 12, 12)
    u = untouched(model)
    ours = ns.explain(
        model, x, target=[0, 2, 3], method="feature_ablation", feature_mask=mask, baseline=0.5, max_batch=5
    )
    u.check()
    theirs = FeatureAblation(model).attribute(
        x, target=torch.tensor([0, 2, 3]), feature_mask=mask, baselines=0.5
    )
    torch.testing.assert_close(ours.attributions, theirs, atol=1e-5, rtol=1e-5)
    assert [v.numel() for v in ours.meta["feature_values"]] == [9, 9, 9]


def test_tabular_columns_match_captum_and_the_definition() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    ours = ns.explain(model, x, target=1, method="feature_ablation")
    theirs = FeatureAblation(model).attribute(x, target=1)
    torch.testing.assert_close(ours.attributions, theirs, atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # by hand: column 4 of sample 2
        off = x[2:3].clone()
        off[0, 4] = 0.0
        want = model(x[2:3])[0, 1] - model(off)[0, 1]
    assert abs(ours.attributions[2, 4].item() - want.item()) <= 1e-6
    with torch.no_grad():
        gap = (ours.attributions.sum(1) - (model(x)[:, 1] - model(torch.zeros_like(x))[:, 1])).abs()
    torch.testing.assert_close(ours.meta["completeness_error"], gap, atol=1e-5, rtol=1e-4)


def test_token_ids_ablate_to_a_baseline_token_keeping_masked_positions() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(30, 8)
    head = nn.Linear(8, 2)

    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.head = emb, head

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids).mean(1))

    model = Text().eval()
    ids = torch.randint(2, 30, (2, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[-1, 0, 1, 2, -1]])  # [CLS] and [SEP] stay
    ours = ns.explain(model, ids, target=0, method="feature_ablation", feature_mask=mask, baseline=1)
    assert (ours.attributions[:, [0, 4]] == 0).all()
    with torch.no_grad():
        off = ids.clone()
        off[:, 2] = 1
        want = model(ids)[:, 0] - model(off)[:, 0]
    torch.testing.assert_close(ours.attributions[:, 2], want, atol=1e-6, rtol=1e-5)


def test_it_takes_no_layer() -> None:
    with pytest.raises(ns.errors.ArgumentError, match="layer"):
        ns.explain(_cnn(), torch.randn(1, 3, 8, 8), method="feature_ablation", layer="0")
