"""deeplift (rescale rule) against Captum's DeepLift (the oracle) and against summation to delta
(Shrikumar et al. 2017: the attributions add up to f(x) - f(x'))."""

from __future__ import annotations

import warnings

import torch
from captum.attr import DeepLift
from torch import nn

import netsight as ns


def _net(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(6, 6, 3, padding=1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 8), nn.Sigmoid(), nn.Linear(8, 4),
    ).eval()  # fmt: skip


def _captum(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: list[int]) -> torch.Tensor:
    with warnings.catch_warnings():  # Captum warns about its own hooks on reused modules
        warnings.simplefilter("ignore")
        return DeepLift(model).attribute(x, baselines=baseline, target=torch.tensor(target))


def test_matches_captum_deeplift_in_chunks(untouched) -> None:
    model = _net()
    x = torch.randn(5, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    u = untouched(model)
    target = [0, 1, 3, 2, 0]
    ours = ns.explain(model, x, target=target, method="deeplift", max_batch=4)  # chunks of 2 pairs
    u.check()
    torch.testing.assert_close(
        ours.attributions, _captum(model, x, torch.zeros_like(x), target), atol=1e-7, rtol=1e-5
    )
    assert ours.meta["rescaled_modules"] == 3


def test_a_baseline_tensor_and_summation_to_delta_with_in_place_relus() -> None:
    model = _net(inplace=True)
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    base = torch.full_like(x, 0.3)
    ours = ns.explain(model, x, target=2, method="deeplift", baseline=base)
    assert model[1].inplace  # the flag comes back
    with torch.no_grad():
        delta = model(x)[:, 2] - model(base)[:, 2]
    torch.testing.assert_close(ours.attributions.sum(dim=(1, 2, 3)), delta, atol=1e-5, rtol=1e-4)
    assert (ours.meta["completeness_error"] <= 1e-5).all()
    torch.testing.assert_close(ours.attributions, _captum(_net(), x, base, [2, 2]), atol=1e-7, rtol=1e-5)


def test_it_differs_from_input_times_gradient_where_activations_saturate() -> None:
    """The point of the rescale rule: across a saturated Tanh the gradient is ~0 but the difference is not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1), nn.Tanh(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        model[0].weight.fill_(5.0)
        model[0].bias.zero_()
    x = torch.ones(1, 4)
    dl = ns.explain(model, x, target=0, method="deeplift").attributions
    ixg = ns.explain(model, x, target=0, method="input_x_gradient").attributions
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x)))[0, 0]
    assert abs(dl.sum().item() - delta.item()) <= 1e-5
    assert abs(ixg.sum().item()) < 1e-6 < abs(delta.item())
