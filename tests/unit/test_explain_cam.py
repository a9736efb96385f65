"""CAM methods against pytorch-grad-cam and Captum (oracles) on a small CNN and ResNet-18."""

from __future__ import annotations

import pytest
import torch
from _explain_models import minmax, pearson, resnet18, tiny_cnn, without_inplace
from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

import netsight as ns

# (model factory, input shape, layer path, the module for the peers)
MODELS = {
    "tiny_cnn": (tiny_cnn, (3, 3, 16, 16), "features.5"),
    "resnet18": (resnet18, (2, 3, 96, 96), "layer4"),
}


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    return dict(model.named_modules())[path]


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor, str]:
    make, shape, layer = MODELS[request.param]
    return make(), torch.randn(shape, generator=torch.Generator().manual_seed(1)), layer


def _pgc(cls: type, model: torch.nn.Module, layer: str, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    peer_model = without_inplace(model)
    with cls(model=peer_model, target_layers=[_module(peer_model, layer)]) as cam:
        if cls in (ScoreCAM, AblationCAM):
            cam.batch_size = 64
        out = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(t) for t in target])
    return torch.from_numpy(out)[:, None]  # [B, 1, H, W], min-max scaled by the peer


@pytest.mark.parametrize(
    ("method", "peer"),
    [
        ("grad_cam", GradCAM),
        ("grad_cam_pp", GradCAMPlusPlus),
        ("xgrad_cam", XGradCAM),
        ("layer_cam", LayerCAM),
        ("hires_cam", HiResCAM),
    ],
)
def test_matches_pytorch_grad_cam(case, method, peer, untouched) -> None:
    model, x, layer = case
    target = [5, 2, 9][: x.shape[0]]
    u = untouched(model)
    ours = ns.explain(model, x, target=target, method=method, layer=layer)
    u.check()
    assert ours.attributions.shape == (x.shape[0], 1, *x.shape[-2:])
    assert ours.layer == layer
    theirs = _pgc(peer, model, layer, x, target)
    err = (minmax(ours.attributions) - minmax(theirs)).abs().max().item()
    assert err <= 1e-5, f"{method}: max abs error {err:.2e} after min-max normalisation"


def test_score_cam_matches_pytorch_grad_cam(case) -> None:
    model, x, layer = case
    if layer == "layer4":  # 512 masked forwards per image: one image, a 256-channel layer
        x, layer = x[:1, :, :64, :64], "layer3"
    target = [5, 2, 9][: x.shape[0]]
    ours = ns.explain(model, x, target=target, method="score_cam", layer=layer, max_batch=128)
    theirs = _pgc(ScoreCAM, model, layer, x, target)
    # pytorch-grad-cam upsamples the masks with align_corners=True, we with align_corners=False (as
    # every other map here): identical when the layer has the input's resolution, close otherwise.
    r = min(pearson(ours.attributions[i], theirs[i]) for i in range(x.shape[0]))
    assert r >= 0.99, f"score_cam: Pearson {r:.4f}"
    if ours.meta["raw"].shape[-2:] == x.shape[-2:]:
        assert (minmax(ours.attributions) - minmax(theirs)).abs().max().item() <= 1e-5


def test_ablation_cam_matches_pytorch_grad_cam(case, untouched) -> None:
    """Both zero one channel at a time (the peer does so where the layer's output has minimum 0, as after
    a ReLU, which holds for these layers) and weigh it by the relative score drop."""
    model, x, layer = case
    if layer == "layer4":  # 512 ablated forwards per image: one image, a 256-channel layer
        x, layer = x[:1, :, :64, :64], "layer3"
    target = [5, 2, 9][: x.shape[0]]
    u = untouched(model)
    with ns.capture(model, layers=layer) as cap:
        model(x)
    assert cap[layer].activation.min() == 0  # the peer's zeroing rule applies
    ours = ns.explain(model, x, target=target, method="ablation_cam", layer=layer, max_batch=48)
    u.check()
    theirs = _pgc(AblationCAM, model, layer, x, target)
    err = (minmax(ours.attributions) - minmax(theirs)).abs().max().item()
    assert err <= 1e-5, f"ablation_cam: max abs error {err:.2e} after min-max normalisation"
    # the weights are the relative drops of the score, recomputed by hand for one channel
    with torch.no_grad():
        y = model(x)[0, target[0]]

        def zero(m, a, out, k=3):
            out = out.clone()
            out[:, k] = 0
            return out

        h = _module(model, layer).register_forward_hook(zero)
        yk = model(x)[0, target[0]]
        h.remove()
    assert abs(ours.meta["weights"][0, 3].item() - ((y - yk) / y).item()) <= 1e-4 * max(
        1.0, abs(((y - yk) / y).item())
    )


def test_eigen_cam_matches_the_svd_projection(case) -> None:
    model, x, layer = case
    ours = ns.explain(model, x, method="eigen_cam", layer=layer)
    with ns.capture(model, layers=layer) as cap:
        model(x)
    acts = cap[layer].activation
    proj = torch.from_numpy(get_2d_projection(acts.numpy()))[:, None]  # the peer's projection (any sign)
    ref = acts.sum(1, keepdim=True) - acts.sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    sign = torch.where((proj * ref).sum(dim=(1, 2, 3), keepdim=True) < 0, -1.0, 1.0)
    want = torch.relu(proj * sign)
    r = min(pearson(ours.meta["raw"][i], want[i]) for i in range(x.shape[0]))
    assert r >= 0.99, f"eigen_cam: Pearson {r:.4f}"
    # pytorch-grad-cam's EigenCAM keeps whatever sign numpy's SVD returns: equal to ours or to the
    # positive part of its negation
    theirs = _pgc(EigenCAM, model, layer, x, [0] * x.shape[0])
    for i in range(x.shape[0]):
        if sign[i].item() > 0:  # numpy's sign agrees with our convention for this sample
            assert pearson(ours.attributions[i], theirs[i]) >= 0.99


def test_grad_cam_matches_captum(case) -> None:
    model, x, layer = case
    ours = ns.explain(model, x, target=4, method="grad_cam", layer=layer)
    lgc = LayerGradCam(model, _module(model, layer))
    raw = lgc.attribute(x, target=4, relu_attributions=True)
    torch.testing.assert_close(ours.meta["raw"], raw, atol=1e-6, rtol=1e-5)
    up = LayerAttribution.interpolate(raw, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    torch.testing.assert_close(ours.attributions, up, atol=1e-6, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
def test_guided_grad_cam_matches_captum(case) -> None:
    model, x, layer = case
    ours = ns.explain(model, x, target=4, method="guided_grad_cam", layer=layer)
    peer_model = without_inplace(model)
    theirs = GuidedGradCam(peer_model, _module(peer_model, layer)).attribute(
        x.clone().requires_grad_(True), target=4, interpolate_mode="bilinear"
    )
    err = ((ours.attributions - theirs).abs().max() / theirs.abs().max()).item()
    assert err <= 1e-5


def test_layer_methods_report_raw_and_default_layer() -> None:
    model = resnet18()
    x = torch.randn(2, 3, 64, 64)
    ex = ns.explain(model, x, method="grad_cam")
    assert ex.layer == "layer4"  # the last module with a spatial output (avgpool's is 1x1)
    assert ex.meta["raw"].shape == (2, 1, 2, 2)
    assert ex.target.tolist() == model(x).argmax(1).tolist()


def test_vit_default_layer_and_token_grid(untouched) -> None:
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    u = untouched(vit)
    ex = ns.explain(vit, x, target=1, method="grad_cam")
    u.check()
    assert ex.layer == "encoder.layers.encoder_layer_1.ln_1"
    assert ex.meta["raw"].shape == (2, 1, 4, 4)  # 16 patch tokens on a 4x4 grid, class token dropped
    # by hand: tokens of that layer without the class token, on the grid, Grad-CAM weights
    with ns.capture(vit, layers=ex.layer, detach=False) as cap:
        out = vit(x)
        tok = cap[ex.layer].activation  # [B, 17, 16]
        (g,) = torch.autograd.grad(out[:, 1].sum(), tok)
    a = tok.detach()[:, 1:].transpose(1, 2).reshape(2, 16, 4, 4)
    gg = g[:, 1:].transpose(1, 2).reshape(2, 16, 4, 4)
    want = torch.relu((gg.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    torch.testing.assert_close(ex.meta["raw"], want, atol=1e-6, rtol=1e-5)
