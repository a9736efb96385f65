"""Gradient methods against Captum (the oracle) on a small CNN and a ResNet-18 with random weights."""

from __future__ import annotations

import pytest
import torch
from _explain_models import resnet18, tiny_cnn, without_inplace
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Saliency,
)

import netsight as ns

MODELS = {"tiny_cnn": (tiny_cnn, (3, 3, 16, 16)), "resnet18": (resnet18, (2, 3, 32, 32))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor]:
    make, shape = MODELS[request.param]
    g = torch.Generator().manual_seed(1)
    return make(), torch.randn(shape, generator=g)


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
@pytest.mark.parametrize(
    ("method", "peer", "kwargs"),
    [
        ("saliency", Saliency, {"abs": True}),
        ("input_x_gradient", InputXGradient, {}),
        ("guided_backprop", GuidedBackprop, {}),
        ("deconvnet", Deconvolution, {}),
    ],
)
def test_matches_captum(case, method, peer, kwargs, untouched) -> None:
    model, x = case
    u = untouched(model)
    target = [1, 7, 3][: x.shape[0]]
    ours = ns.explain(model, x, target=target, method=method)
    u.check()
    # Captum's backward hooks cannot run through in-place ReLUs: it gets an out-of-place copy, we
    # run on the original (in-place) model.
    theirs = peer(without_inplace(model)).attribute(x.clone().requires_grad_(True), target=target, **kwargs)
    assert ours.attributions.shape == x.shape
    scale = theirs.abs().max()
    assert scale > 0
    err = ((ours.attributions - theirs).abs().max() / scale).item()
    assert err <= 1e-5, f"{method}: max abs error {err:.2e} (relative to the map's max)"
    assert ours.target.tolist() == target


@pytest.mark.parametrize(
    ("rule", "captum_rule"),
    [
        ("riemann_left", "riemann_left"),
        ("riemann_right", "riemann_right"),
        ("riemann_middle", "riemann_middle"),
        ("riemann_trapezoid", "riemann_trapezoid"),
        ("gauss_legendre", "gausslegendre"),
    ],
)
def test_integrated_gradients_matches_captum(case, rule, captum_rule) -> None:
    model, x = case
    ours = ns.explain(model, x, target=2, method="integrated_gradients", rule=rule, steps=6, max_batch=5)
    theirs, delta = IntegratedGradients(model).attribute(
        x, target=2, n_steps=6, method=captum_rule, return_convergence_delta=True
    )
    if rule == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n (halved at the ends), summing to (n-1)/n instead of 1;
        # the trapezoid rule on n equally spaced nodes has 1/(n-1). Same nodes, a constant factor.
        theirs = theirs * 6 / 5
        delta = None
    err = ((ours.attributions - theirs).abs().max() / theirs.abs().max()).item()
    assert err <= 1e-5, f"{rule}: max abs error {err:.2e}"
    if delta is None:
        return
    # completeness error: |sum attr - (F(x) - F(0))| computed by both
    torch.testing.assert_close(ours.meta["completeness_error"], delta.abs(), atol=2e-5, rtol=1e-3)
    assert ours.meta["steps"].tolist() == [6] * x.shape[0]


def _default_resnet18() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.mark.parametrize("which", ["tiny_cnn", "resnet18_default_init"])
def test_gauss_legendre_16_beats_riemann_50(which, capsys) -> None:
    """Gauss-Legendre with 16 nodes is no worse than the paper's Riemann sum (right end points,
    Sundararajan et al. eq. 3) with 50. On ResNet-18 as torchvision initialises it, the network is
    positively homogeneous along the path from the zero baseline, so both rules are exact up to float
    rounding (compared with a 1e-6 allowance for that). (On a ResNet-18 with calibrated BatchNorm the
    integrand is much rougher and 16 nodes lose: see benchmarks/explain_vs_peers.py.)"""
    model = tiny_cnn() if which == "tiny_cnn" else _default_resnet18()
    shape = (6, 3, 16, 16) if which == "tiny_cnn" else (2, 3, 32, 32)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    gl = ns.explain(model, x, target=2, method="integrated_gradients", rule="gauss_legendre", steps=16)
    rr = ns.explain(model, x, target=2, method="integrated_gradients", rule="riemann_right", steps=50)
    e_gl = gl.meta["completeness_error"].mean().item()
    e_rr = rr.meta["completeness_error"].mean().item()
    delta = gl.meta["delta"].abs().mean().item()
    with capsys.disabled():
        print(
            f"\n[IG completeness] {which}: mean |F(x)-F(x')| {delta:.4g}; "
            f"Gauss-Legendre 16 steps {e_gl:.3g}, Riemann (right) 50 steps {e_rr:.3g}"
        )
    slack = 0.0 if which == "tiny_cnn" else 1e-6
    assert e_gl <= e_rr + slack


def test_integrated_gradients_completeness_by_hand() -> None:
    """Completeness against a hand computation: a quadratic model, where 2-point Gauss-Legendre is exact."""

    class Quad(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = (x.flatten(1) ** 2).sum(1)
            return torch.stack([s, -s], dim=1)

    x = torch.randn(3, 2, 4, 4)
    ex = ns.explain(Quad(), x, target=0, method="integrated_gradients", rule="gauss_legendre", steps=2)
    # IG of sum x^2 from 0: x_i * int 2 a x_i da = x_i^2, exactly
    torch.testing.assert_close(ex.attributions, x**2, atol=1e-6, rtol=1e-5)
    assert ex.meta["completeness_error"].max().item() < 1e-4


def _completeness_by_hand(
    model: torch.nn.Module, x: torch.Tensor, attr: torch.Tensor, target: int
) -> torch.Tensor:
    """``|sum attr - (F(x) - F(0))|`` per sample from plain forwards (nothing from netsight's meta)."""
    with torch.no_grad():
        delta = model(x)[:, target] - model(torch.zeros_like(x))[:, target]
    return (attr.flatten(1).sum(1) - delta).abs()


@pytest.mark.parametrize("which", ["tiny_cnn", "resnet18"])
def test_integrated_gradients_adaptive_meets_tolerance(which, capsys) -> None:
    """The adaptive mode's tolerance is Captum's mean completeness error at 50 Gauss-Legendre steps
    (what the benchmark does); every sample it returns is within it, checked against an independent
    computation of the completeness error, and it spends fewer gradient evaluations than Captum."""
    model = tiny_cnn() if which == "tiny_cnn" else resnet18()
    shape = (6, 3, 16, 16) if which == "tiny_cnn" else (4, 3, 32, 32)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    _, delta = IntegratedGradients(model).attribute(x, target=2, n_steps=50, return_convergence_delta=True)
    tol = delta.abs().mean().item()
    ad = ns.explain(model, x, target=2, method="integrated_gradients", tolerance=tol, max_steps=256)
    steps, err = ad.meta["steps"], ad.meta["completeness_error"]
    assert ad.meta["options"]["rule"] == "adaptive_trapezoid"
    by_hand = _completeness_by_hand(model, x, ad.attributions, 2)
    torch.testing.assert_close(err, by_hand, atol=2e-6, rtol=1e-3)
    assert bool(((by_hand <= tol * (1 + 1e-3) + 1e-6) | (steps == 256)).all()), (by_hand, tol, steps)
    assert steps.min().item() >= 9  # 8 intervals to start with, both end points included
    with capsys.disabled():
        print(
            f"\n[IG adaptive] {which}: tolerance {tol:.3g} (Captum 50 GL mean error), max error "
            f"{by_hand.max().item():.3g}, nodes per sample {steps.tolist()} (Captum 50)"
        )
    assert steps.float().mean().item() < 50


def test_integrated_gradients_adaptive_converges_to_captum() -> None:
    """Completeness is one number per sample; the attribution itself must converge too. With a
    tolerance too tight to meet, every sample is refined to ``max_steps`` nodes and the map is closer to
    Captum's 1000-step integral than Captum's own 50-step default is."""
    model = tiny_cnn()
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    ig = IntegratedGradients(model)
    ref = ig.attribute(x, target=2, n_steps=1000, internal_batch_size=500)
    c50 = ig.attribute(x, target=2, n_steps=50)
    ad = ns.explain(model, x, target=2, method="integrated_gradients", tolerance=1e-9, max_steps=200)
    assert ad.meta["steps"].tolist() == [200] * 6

    def dist(a: torch.Tensor) -> torch.Tensor:
        return (a - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)

    assert bool((dist(ad.attributions) < dist(c50)).all()), (dist(ad.attributions), dist(c50))
    assert dist(ad.attributions).max().item() < 0.006


def test_integrated_gradients_adaptive_cubic_closed_form() -> None:
    """``F(x) = sum x_i^3``: IG from 0 is ``x_i^3`` exactly, and along the path ``dF/da = 3 a^2 S`` with
    ``S = sum x_i^3``, so the trapezoid rule is off by ``S w^3 / 2`` on an interval of width ``w``: every
    pixel's attribution is ``x_i^3 (1 + e / S)`` with ``e`` the completeness error. Eight equal intervals
    give ``e = S / 128``: a sample with ``|S| / 128`` under the tolerance stops at 9 nodes, the others
    refine until they are within it."""

    class Cubic(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = (x.flatten(1).double() ** 3).sum(1)
            return torch.stack([s, -s], dim=1)

    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(4)).double()
    x[0] *= 0.1  # small |S|: within the tolerance at the start
    s = (x.flatten(1) ** 3).sum(1)
    tol = 1e-3
    ex = ns.explain(Cubic(), x, target=0, method="integrated_gradients", tolerance=tol)
    err = ex.meta["completeness_error"]
    e = ex.attributions.flatten(1).sum(1) - s
    torch.testing.assert_close(err, e.abs())
    assert bool((err <= tol).all()), err
    torch.testing.assert_close(ex.attributions, x**3 * (1 + e / s).view(-1, 1, 1, 1))
    start = (s.abs() / 128 <= tol).tolist()
    assert start[0]
    assert not all(start)
    assert [n == 9 for n in ex.meta["steps"].tolist()] == start
    torch.testing.assert_close(err[0], s[0].abs() / 128)


def test_integrated_gradients_whole_sample_refinement() -> None:
    """An explicit rule with a tolerance refines whole samples: nested midpoints 6 -> 18 -> 54; each
    sample's attribution is the fixed midpoint rule with its own node count."""
    model = tiny_cnn()
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    fixed = ns.explain(model, x, target=2, method="integrated_gradients", steps=50)
    tol = fixed.meta["completeness_error"].median().item()
    ad = ns.explain(
        model, x, target=2, method="integrated_gradients", rule="riemann_middle", tolerance=tol, max_steps=256
    )
    steps = ad.meta["steps"]
    err = ad.meta["completeness_error"]
    assert bool(((err <= tol) | (steps == 162)).all()), (err, steps)
    assert set(steps.tolist()) <= {6, 18, 54, 162}
    for i in range(x.shape[0]):
        one = ns.explain(
            model,
            x[i : i + 1],
            target=2,
            method="integrated_gradients",
            rule="riemann_middle",
            steps=int(steps[i]),
        )
        torch.testing.assert_close(ad.attributions[i : i + 1], one.attributions, atol=1e-6, rtol=1e-4)


def test_integrated_gradients_adaptive_argument_errors() -> None:
    model = tiny_cnn()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ns.errors.ArgumentError, match="tolerance"):
        ns.explain(model, x, target=2, method="integrated_gradients", rule="adaptive_trapezoid")
    with pytest.raises(ns.errors.ArgumentError, match="max_steps"):
        ns.explain(model, x, target=2, method="integrated_gradients", tolerance=1e-3, max_steps=5)
    with pytest.raises(ns.errors.ArgumentError, match="tolerance"):
        ns.explain(model, x, target=2, method="integrated_gradients", tolerance=-1.0)


@pytest.mark.parametrize("baseline", ["zero", "blur", "uniform", 0.5])
def test_integrated_gradients_baselines(baseline) -> None:
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16)
    g = torch.Generator().manual_seed(3)
    ex = ns.explain(
        model, x, target=1, method="integrated_gradients", baseline=baseline, generator=g, steps=8
    )
    xb = ex.meta["baseline"]
    assert xb.shape == x.shape
    if baseline == "zero":
        assert bool((xb == 0).all())
    elif baseline == "uniform":
        assert bool((xb >= x.amin(dim=(1, 2, 3), keepdim=True)).all())
        assert bool((xb <= x.amax(dim=(1, 2, 3), keepdim=True)).all())
    elif baseline == "blur":
        assert xb.std() < x.std()  # smoother than the image
        torch.testing.assert_close(xb.mean(), x.mean(), atol=0.02, rtol=0)
    theirs = IntegratedGradients(model).attribute(x, baselines=xb, target=1, n_steps=8)
    torch.testing.assert_close(ex.attributions, theirs, atol=1e-5, rtol=1e-4)


def test_expected_gradients_by_hand() -> None:
    """Expected gradients equals the average of (x - b) * grad at the sampled points (same draws)."""
    model = tiny_cnn()
    x = torch.randn(2, 3, 16, 16)
    background = torch.randn(5, 3, 16, 16)
    ex = ns.explain(
        model,
        x,
        target=4,
        method="expected_gradients",
        baselines=background,
        samples=6,
        generator=torch.Generator().manual_seed(7),
    )
    g = torch.Generator().manual_seed(7)
    pick = torch.randint(5, (12,), generator=g)
    alphas = torch.rand((12,), generator=g)
    expected = torch.zeros_like(x)
    for j in range(12):
        i = j // 6
        b = background[pick[j]]
        p = (b + alphas[j] * (x[i] - b))[None].requires_grad_(True)
        (grad,) = torch.autograd.grad(model(p)[0, 4], p)
        expected[i] += (grad[0] * (x[i] - b)) / 6
    torch.testing.assert_close(ex.attributions, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_by_hand(kind) -> None:
    model = tiny_cnn()
    x = torch.randn(2, 3, 16, 16)
    ex = ns.explain(
        model, x, target=3, method=kind, samples=5, sigma=0.2, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    std = 0.2 * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    noisy = x.repeat_interleave(5, 0)
    noisy = noisy + torch.randn(noisy.shape, generator=g) * std.repeat_interleave(5).view(-1, 1, 1, 1)
    noisy.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(noisy)[:, 3].sum(), noisy)
    m = grad.abs().reshape(2, 5, 3, 16, 16)
    want = {
        "smoothgrad": m.mean(1),
        "smoothgrad_sq": (m**2).mean(1),
        "vargrad": m.var(1, unbiased=False),
    }[kind]
    torch.testing.assert_close(ex.attributions, want, atol=1e-6, rtol=1e-4)


def test_smoothgrad_over_integrated_gradients() -> None:
    model = tiny_cnn()
    x = torch.randn(2, 3, 16, 16)
    ex = ns.explain(
        model,
        x,
        target=0,
        method="smoothgrad",
        base="integrated_gradients",
        samples=3,
        base_options={"steps": 4},
    )
    assert ex.attributions.shape == x.shape
    assert ex.meta["options"]["base"] == "integrated_gradients"
    with pytest.raises(ns.errors.ArgumentError, match="wraps a gradient method"):
        ns.explain(model, x, method="smoothgrad", base="grad_cam")
