"""Perturbation methods against the peer libraries as oracles: Captum ``Occlusion`` on ResNet-18, the
``shap`` package's ``KernelExplainer`` on a tabular MLP, the ``lime`` package's image explainer on the
same superpixels (grid cells)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from torch import nn

import netsight as ns

# importing shap imports matplotlib, which warns about an API shap uses (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap.*")


def resnet18() -> nn.Module:
    """torchvision's ResNet-18 with random weights and BatchNorm statistics from a few random batches
    (with the default statistics a random ResNet is nearly linear, which would make any check easy)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64))
    return model.eval()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double().flatten(), b.double().flatten()]))[0, 1])


def _mlp(features: int) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(features, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    ).eval()


@pytest.mark.slow
def test_occlusion_matches_captum_on_resnet18(untouched) -> None:
    model = resnet18()
    x = torch.randn(1, 3, 64, 64)
    u = untouched(model)
    ex = ns.explain(model, x, target=3, method="occlusion", window=16, stride=12, baseline=0.0)
    u.check()
    ref = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(3, 16, 16),
        strides=(3, 12, 12),
        baselines=0.0,
        target=3,
        perturbations_per_eval=25,
    )
    assert ex.meta["windows"] == (1, 5, 5)
    assert (ex.attributions - ref).abs().max().item() <= 1e-5


def _shap_values(model: nn.Module, x: torch.Tensor, background: torch.Tensor, nsamples: int) -> torch.Tensor:
    import shap

    def f(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(a, dtype=torch.float32))[:, 1].double().numpy()

    explainer = shap.KernelExplainer(f, background.numpy())
    np.random.seed(0)  # shap samples with numpy's global generator
    vals = explainer.shap_values(x.numpy(), nsamples=nsamples, l1_reg=False, silent=True)
    return torch.as_tensor(np.asarray(vals))


def test_kernel_shap_matches_shap_exactly_when_every_coalition_fits() -> None:
    m = 8
    model = _mlp(m)
    x = torch.randn(3, m)
    background = torch.randn(4, m)
    ours = ns.explain(model, x, target=1, method="kernel_shap", background=background, n_samples=2**m)
    ref = _shap_values(model, x, background, nsamples=2**m)
    assert ours.meta["exact"]
    assert (ours.attributions.double() - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_kernel_shap_agrees_with_shap_when_sampling() -> None:
    m = 16
    model = _mlp(m)
    x = torch.randn(4, m)
    background = torch.randn(3, m)
    ours = ns.explain(model, x, target=1, method="kernel_shap", background=background, n_samples=1500)
    ref = _shap_values(model, x, background, nsamples=1500)
    assert not ours.meta["exact"]
    r = _pearson(ours.attributions, ref)
    print(f"kernel_shap vs shap.KernelExplainer (M=16, 1500 coalitions): Pearson {r:.4f}")
    assert r >= 0.99


def test_lime_agrees_with_the_lime_package_on_the_same_superpixels(small_cnn) -> None:
    from lime import lime_image

    model = small_cnn
    x = torch.rand(1, 3, 16, 16)
    grid = 4
    feats = ns.explain(model, x, target=2, method="lime", features="grid", grid=grid, n_samples=2).meta[
        "features"
    ]
    segments = feats[0, 0].numpy()

    def classifier(imgs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(imgs, dtype=torch.float32).permute(0, 3, 1, 2)
            return model(t).double().numpy()

    explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=0)
    got = explainer.explain_instance(
        x[0].permute(1, 2, 0).double().numpy(),
        classifier,
        labels=(2,),
        top_labels=None,
        hide_color=0,
        num_samples=2000,
        batch_size=100,
        segmentation_fn=lambda img: segments,
        random_seed=0,
    )
    ref = torch.zeros(grid * grid, dtype=torch.float64)
    for feature, coef in got.local_exp[2]:
        ref[feature] = coef
    # the same estimator: Bernoulli(1/2) samples, cosine distance, lime's kernel sqrt(exp(-d^2/w^2)),
    # i.e. exp(-d^2/sigma^2) with sigma = sqrt(2) w, ridge alpha 1 with an intercept
    ours = ns.explain(
        model,
        x,
        target=2,
        method="lime",
        features="grid",
        grid=grid,
        n_samples=2000,
        sampler="bernoulli",
        kernel_width=0.25 * 2**0.5,
        alpha=1.0,
        baseline=0.0,
    )
    coef = ours.meta["coefficients"][0].double()
    r = _pearson(coef, ref)
    print(f"lime vs the lime package (16 cells, 2000 samples each): Pearson {r:.4f}")
    assert r >= 0.9
    top = set(ref.abs().topk(4).indices.tolist())
    assert len(top & set(coef.abs().topk(4).indices.tolist())) >= 3
