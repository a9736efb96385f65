"""Unusual but legitimate inputs and models: every method on each, checked against an independent oracle.

Oracles: the model's full ``state_dict`` before the call (buffers included), the same method on a plain
float32 contiguous input, or the same call written the ordinary way (``int`` target, explicit path).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import netsight as ns
from netsight.errors import ArgumentError, NetsightWarning, TargetError

#: options that keep every image method to a few passes
FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 4},
    "expected_gradients": {"samples": 4},
    "smoothgrad": {"samples": 3},
    "smoothgrad_sq": {"samples": 3},
    "vargrad": {"samples": 3},
    "kernel_shap": {"n_samples": 32, "features": "grid", "grid": 4},
    "lime": {"n_samples": 32, "features": "grid", "grid": 4},
    "occlusion": {"window": 4, "stride": 4},
    "rise": {"n_masks": 16, "cells": 4},
}
IMAGE_METHODS = [n for n in ns.list_methods() if ns.get_method(n).inputs == "image"]
#: methods whose result does not depend on random draws (noise, baselines, masks, coalitions)
DETERMINISTIC = [
    "deconvnet",
    "eigen_cam",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "guided_grad_cam",
    "hires_cam",
    "input_x_gradient",
    "integrated_gradients",
    "layer_cam",
    "occlusion",
    "saliency",
    "score_cam",
    "xgrad_cam",
]


class Net(nn.Module):
    """conv-BN-ReLU x2, pool, dropout, linear: BatchNorm buffers and a Dropout for train mode."""

    def __init__(self, in_ch: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


def _net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _explain(model: nn.Module, x: torch.Tensor, target: Any, method: str, **options: Any) -> ns.Explanation:
    torch.manual_seed(0)  # the same draws for the methods that sample
    return ns.explain(model, x, target, method=method, progress=False, **{**FAST.get(method, {}), **options})


# -- a model in training mode ----------------------------------------------------------------------
@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_a_training_model_keeps_its_batchnorm_statistics(method: str) -> None:
    """Forwards in train mode update BatchNorm's running statistics; an explanation must not."""
    model = _net().train()
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(
        NetsightWarning, match=r"dropout module\(s\) in training mode .*model\.eval\(\)"
    ) as got:
        ex = _explain(model, torch.randn(2, 3, 12, 12), 1, method)
    assert got[0].filename == __file__  # the user's line
    assert ex.attributions.shape[0] == 2
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert changed == []
    assert all(m.training for m in model.modules())
    assert not model.fc.weight.requires_grad
    assert model.fc.bias.requires_grad


def test_buffers_come_back_also_when_the_method_raises() -> None:
    model = _net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def bad(out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("target failed after the forward")

    with pytest.raises(RuntimeError, match="target failed"), pytest.warns(NetsightWarning, match="dropout"):
        ns.explain(model, torch.randn(2, 3, 8, 8), bad, method="saliency")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_training_model_keeps_spectral_norm_vectors() -> None:
    """Spectral norm's power iteration updates its ``_u`` / ``_v`` buffers on every train-mode forward."""
    from torch.nn.utils.parametrizations import spectral_norm

    torch.manual_seed(0)
    model = nn.Sequential(
        spectral_norm(nn.Conv2d(3, 4, 3, padding=1)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ns.explain(model, torch.randn(2, 3, 8, 8), 1, method="saliency")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


# -- inference mode ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["saliency", "grad_cam", "integrated_gradients", "occlusion"])
def test_inference_mode_and_inference_tensors(method: str) -> None:
    """Inside ``torch.inference_mode()``, or with inputs made there, the result is the ordinary one."""
    model = _net()
    x = torch.randn(2, 3, 12, 12)
    want = _explain(model, x, 1, method).attributions
    with torch.inference_mode():
        xi = x.clone()  # an inference tensor
        inside = _explain(model, xi, 1, method).attributions
    outside = _explain(model, xi, 1, method).attributions
    torch.testing.assert_close(inside, want)
    torch.testing.assert_close(outside, want)


# -- targets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["saliency", "grad_cam", "occlusion", "kernel_shap"])
def test_numpy_targets_are_classes(method: str) -> None:
    model = _net()
    x = torch.randn(2, 3, 12, 12)
    want = _explain(model, x, [1, 3], method)
    for target in (np.array([1, 3]), [np.int64(1), np.int64(3)], torch.tensor([1, 3], dtype=torch.uint8)):
        got = _explain(model, x, target, method)
        torch.testing.assert_close(got.attributions, want.attributions)
        assert got.target is not None
        assert got.target.tolist() == [1, 3]
    same = _explain(model, x, 3, method)
    assert torch.equal(_explain(model, x, np.int64(3), method).attributions, same.attributions)
    assert torch.equal(_explain(model, x, np.array(3), method).attributions, same.attributions)


def test_bad_numpy_and_bool_targets_are_refused_by_name() -> None:
    model = _net()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(TargetError, match="class 9 is out of range for an output with 5 classes"):
        ns.explain(model, x, np.array([1, 9]), method="saliency")
    with pytest.raises(TargetError, match="class -1 is negative"):
        ns.explain(model, x, np.int32(-1), method="saliency")
    with pytest.raises(TargetError, match="cannot use float32"):
        ns.explain(model, x, np.float32(1), method="saliency")
    # booleans are not classes (True would silently mean class 1)
    for flags in (torch.tensor([True, False]), np.array([True, False])):
        with pytest.raises(TargetError, match=r"got a torch\.bool tensor"):
            ns.explain(model, x, flags, method="saliency")


# -- layer selection -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["grad_cam", "score_cam", "eigen_cam", "guided_grad_cam"])
def test_a_layer_selector_must_pick_one_module(method: str) -> None:
    model = _net()
    x = torch.randn(2, 3, 12, 12)
    want = _explain(model, x, 1, method, layer="features.3")
    for one in ("features.[3]", model.features[3], "module.features.3"):
        got = _explain(model, x, 1, method, layer=one)
        assert got.layer == "features.3"  # the path, whatever named it
        assert torch.equal(got.attributions, want.attributions)
    many = r"'features\.\*' selects 6 modules \(features\.0, .*features\.5\)"
    with pytest.raises(ArgumentError, match=many):
        _explain(model, x, 1, method, layer="features.*")
    with pytest.raises(ArgumentError, match=r"Conv2d selects 2 modules \(features\.0, features\.3\)"):
        _explain(model, x, 1, method, layer=nn.Conv2d)


# -- dtypes and layouts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", DETERMINISTIC)
def test_float64_agrees_with_float32(method: str) -> None:
    model = _net()
    x = torch.randn(2, 3, 12, 12)
    want = _explain(model, x, 1, method).attributions
    got = _explain(copy.deepcopy(model).double(), x.double(), 1, method).attributions
    assert got.dtype == torch.float64
    assert got.shape == want.shape
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_channels_last_and_strided_inputs_agree_with_contiguous(method: str) -> None:
    model = _net()
    x = torch.randn(2, 3, 12, 12)
    want = _explain(model, x, 1, method).attributions
    wide = torch.zeros(2, 3, 12, 24)
    wide[..., ::2] = x
    for layout in (x.contiguous(memory_format=torch.channels_last), wide[..., ::2]):
        got = _explain(model, layout, 1, method).attributions
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("kernel_shap", {"features": "grid", "grid": 4, "n_samples": 300}),
        ("lime", {"features": "grid", "grid": 4, "n_samples": 300}),
        ("kernel_shap", {"n_samples": 100}),  # SLIC superpixels
    ],
)
def test_uint8_images_group_like_float_images(method: str, options: dict[str, Any]) -> None:
    """A model that scales uint8 pixels itself can be explained on them: the same features and scores
    as the float copy of the pixels through the same network without the scaling."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)
    )

    class OnPixels(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return net(x.float() / 255)

    class OnFloats(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return net(x / 255)

    pixels = torch.randint(
        0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    got = ns.explain(OnPixels().eval(), pixels, target=1, method=method, **options)
    want = ns.explain(OnFloats().eval(), pixels.float(), target=1, method=method, **options)
    torch.testing.assert_close(got.attributions.float(), want.attributions.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "grad_cam"])
def test_token_ids_to_a_gradient_method_name_the_methods_that_take_them(method: str) -> None:
    net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ArgumentError, match=r"integer inputs \(dtype torch.int64.*use layer_integrated"):
        ns.explain(net, torch.randint(0, 10, (2, 3)), method=method)
    assert ns.hooks_on(net) == {}


def test_the_models_own_error_says_what_batch_it_was_given() -> None:
    """A single image [3, H, W] without its batch dimension: the model's shape error (from the one-sample
    probe forward, which shows batch 1) gets a note with the real shape and the fix; nothing is left."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(RuntimeError) as got:
        ns.explain(net, torch.randn(3, 8, 8), method="saliency")
    notes = "\n".join(getattr(got.value, "__notes__", []))
    assert "(3, 8, 8)" in notes
    assert "x.unsqueeze(0)" in notes
    assert ns.hooks_on(net) == {}
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
