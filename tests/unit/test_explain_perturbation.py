"""Perturbation methods (occlusion, RISE, LIME, KernelSHAP) against hand computations and definitions.

Oracles: Captum's ``Occlusion`` (same windows, strides, baselines); Shapley values computed by brute force
from their definition; the true effects ``w_i (x_i - b_i)`` of a linear model; scikit-learn's weighted
``Ridge`` for LIME's regression; a model that only looks at a known box for RISE.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _explain_models import tiny_cnn
from captum.attr import Occlusion
from torch import nn

import netsight as ns
from netsight.errors import ArgumentError, TargetError
from netsight.explain._features import make_features
from netsight.explain.kernel_shap import shapley_coalitions, shapley_kernel
from netsight.explain.lime import lime_kernel, weighted_ridge
from netsight.explain.rise import deletion_insertion


# -- helpers ------------------------------------------------------------------------------------------
def _mlp(features: int, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, classes)
    )


def _brute_shapley(value, m: int) -> torch.Tensor:
    """Shapley values from the definition: phi_i = sum over S of |S|!(M-|S|-1)!/M! (v(S + {i}) - v(S))."""
    cache: dict[frozenset[int], float] = {}

    def v(s: frozenset[int]) -> float:
        if s not in cache:
            cache[s] = value(s)
        return cache[s]

    phi = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
            for s in itertools.combinations(others, r):
                fs = frozenset(s)
                phi[i] += w * (v(fs | {i}) - v(fs))
    return phi


class BoxModel(nn.Module):
    """Two classes; class 0 logit is 10 (mean of the pixels in a known box - 1/2), class 1's is 0."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.box = box

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0, r1, c0, c1 = self.box
        s = 10.0 * (x[:, :, r0:r1, c0:c1].mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


# -- occlusion ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("captum_args", "ours"),
    [
        (((3, 4, 4), (3, 2, 2), 0.0), (4, 2)),
        (((3, 5, 3), (3, 3, 2), 0.5), ((5, 3), (3, 2))),  # uneven: the last window is clipped
        (((1, 4, 4), (1, 4, 4), -1.0), ((1, 4, 4), (1, 4, 4))),  # per channel
    ],
)
def test_occlusion_matches_captum(captum_args, ours, untouched) -> None:
    window, stride, baseline = captum_args
    ours_window, ours_stride = ours
    model = tiny_cnn()
    x = torch.randn(2, 3, 12, 12)
    u = untouched(model)
    ex = ns.explain(
        model,
        x,
        target=[1, 4],
        method="occlusion",
        window=ours_window,
        stride=ours_stride,
        baseline=baseline,
        max_batch=40,  # several chunks: windows of different samples share a pass
    )
    u.check()
    ref = Occlusion(model).attribute(
        x, sliding_window_shapes=window, strides=stride, baselines=baseline, target=[1, 4]
    )
    assert ex.attributions.shape == x.shape
    assert (ex.attributions - ref).abs().max().item() <= 1e-5
    assert ex.target.tolist() == [1, 4]


def test_occlusion_tabular_is_the_score_drop_of_each_column() -> None:
    model = _mlp(5)
    x = torch.randn(4, 5)
    base = torch.randn(5)
    ex = ns.explain(model, x, target=2, method="occlusion", baseline=base)
    with torch.no_grad():
        fx = model(x)[:, 2]
        for i in range(5):
            xo = x.clone()
            xo[:, i] = base[i]
            torch.testing.assert_close(ex.attributions[:, i], fx - model(xo)[:, 2], atol=1e-6, rtol=0)


def test_occlusion_rejects_bad_windows() -> None:
    model = tiny_cnn()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ArgumentError, match="window"):
        ns.explain(model, x, method="occlusion", window=20)
    with pytest.raises(ArgumentError, match="stride"):
        ns.explain(model, x, method="occlusion", window=4, stride=5)
    with pytest.raises(ArgumentError, match="layer"):
        ns.explain(model, x, method="occlusion", layer="features.0")


# -- RISE --------------------------------------------------------------------------------------------
def test_rise_concentrates_on_the_region_the_model_looks_at() -> None:
    box = (4, 10, 12, 20)
    model = BoxModel(box)
    x = torch.ones(1, 3, 24, 24)
    ex = ns.explain(model, x, target=0, method="rise", n_masks=1500, cells=6, seed=0)
    sal = ex.attributions[0, 0]
    inside = torch.zeros(24, 24, dtype=torch.bool)
    inside[box[0] : box[1], box[2] : box[3]] = True
    top = sal.flatten().topk(int(inside.sum())).indices
    assert inside.flatten()[top].float().mean().item() >= 0.8
    assert sal[inside].mean() > sal[~inside].mean() + 0.05


def test_rise_is_normalised_by_the_keep_probability() -> None:
    """A model whose probability ignores the input: eq. 6 gives that probability everywhere (E[M] = p)."""

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2) + 0 * x.mean()

    p1 = torch.softmax(torch.tensor([1.0, 0.0]), 0)[0].item()
    ex = ns.explain(Constant(), torch.rand(1, 3, 20, 20), target=0, method="rise", n_masks=3000, p=0.3)
    assert abs(ex.attributions.mean().item() - p1) < 0.02 * p1
    assert ex.meta["scores"].shape == (3000, 1)


def test_deletion_insertion_rank_a_good_map_above_a_bad_one() -> None:
    box = (4, 10, 12, 20)
    model = BoxModel(box)
    x = torch.rand(2, 3, 24, 24) + 0.5
    good = torch.zeros(2, 1, 24, 24)
    good[:, :, box[0] : box[1], box[2] : box[3]] = 1.0
    good = good + 0.01 * torch.rand_like(good)
    bad = -good
    rg = deletion_insertion(model, x, good, target=0, steps=24)
    rb = deletion_insertion(model, x, bad, target=0, steps=24)
    assert (rg.deletion_auc < rb.deletion_auc).all()
    assert (rg.insertion_auc > rb.insertion_auc).all()
    # end points by hand: deletion starts at f(x) and ends at f(0); insertion ends at f(x)
    with torch.no_grad():
        fx = torch.softmax(model(x), 1)[:, 0]
        f0 = torch.softmax(model(torch.zeros_like(x)), 1)[:, 0]
    torch.testing.assert_close(rg.deletion[:, 0], fx)
    torch.testing.assert_close(rg.deletion[:, -1], f0)
    torch.testing.assert_close(rg.insertion[:, -1], fx)
    assert rg.fractions[0] == 0
    assert rg.fractions[-1] == 1
    # the AUC is the trapezoid rule over the fractions
    torch.testing.assert_close(
        rg.deletion_auc, ((rg.deletion[:, 1:] + rg.deletion[:, :-1]) / 2 * rg.fractions.diff()).sum(1)
    )


# -- KernelSHAP ----------------------------------------------------------------------------------------
def test_shapley_kernel_is_the_papers_formula() -> None:
    m = 7
    sizes = torch.arange(1, m)
    want = torch.tensor([(m - 1) / (math.comb(m, s) * s * (m - s)) for s in range(1, m)], dtype=torch.float64)
    torch.testing.assert_close(shapley_kernel(m, sizes), want)


def test_kernel_shap_is_exact_with_every_coalition_tabular() -> None:
    m = 6
    model = _mlp(m).double()
    x = torch.randn(2, m, dtype=torch.float64)
    base = torch.randn(m, dtype=torch.float64)
    ex = ns.explain(model, x, target=1, method="kernel_shap", baseline=base)
    assert ex.meta["exact"]
    for b in range(2):

        def value(s: frozenset[int], b: int = b) -> float:
            z = base.clone()
            z[list(s)] = x[b, list(s)]
            with torch.no_grad():
                return float(model(z[None])[0, 1])

        phi = _brute_shapley(value, m)
        assert (ex.attributions[b] - phi).abs().max().item() <= 1e-4
        # efficiency: the values add up to f(x) - f(baseline)
        with torch.no_grad():
            gap = float(model(x[b : b + 1])[0, 1] - model(base[None])[0, 1])
        assert abs(ex.attributions[b].sum().item() - gap) <= 1e-6
    assert ex.meta["completeness_error"].max().item() <= 1e-6


def test_kernel_shap_is_exact_on_image_grid_cells(untouched) -> None:
    model = tiny_cnn()
    x = torch.randn(1, 3, 16, 16)
    u = untouched(model)
    ex = ns.explain(model, x, target=3, method="kernel_shap", features="grid", grid=(2, 3), baseline=0.0)
    u.check()
    labels = make_features(x, "grid", grid=(2, 3)).labels[0, 0]  # [H, W] cell ids

    def value(s: frozenset[int]) -> float:
        keep = torch.isin(labels, torch.tensor(sorted(s), dtype=torch.long))
        with torch.no_grad():
            return float(model(torch.where(keep, x, 0.0))[0, 3])

    phi = _brute_shapley(value, 6)
    for cell in range(6):
        vals = ex.attributions[0][:, labels == cell]
        assert torch.allclose(vals, vals.flatten()[0].expand_as(vals))  # one value per cell, all channels
        assert abs(vals.flatten()[0].item() - phi[cell].item()) <= 1e-4


def test_kernel_shap_sampled_stays_efficient_and_close_to_exact() -> None:
    m = 12
    model = _mlp(m)
    x = torch.randn(3, m)
    exact = ns.explain(model, x, target=0, method="kernel_shap", n_samples=2**m - 2)
    sampled = ns.explain(model, x, target=0, method="kernel_shap", n_samples=400, seed=3)
    assert exact.meta["exact"]
    assert not sampled.meta["exact"]
    assert sampled.meta["completeness_error"].max().item() <= 1e-5
    torch.testing.assert_close(sampled.attributions.sum(1), exact.attributions.sum(1), atol=1e-5, rtol=0)
    r = torch.corrcoef(torch.stack([exact.attributions.flatten(), sampled.attributions.flatten()]))[0, 1]
    assert r.item() >= 0.95


def test_shapley_coalitions_enumerate_small_sizes_whole() -> None:
    g = torch.Generator().manual_seed(0)
    m = 10
    z, w, exact = shapley_coalitions(m, 300, g, torch.device("cpu"))
    assert not exact
    assert z.shape == (300, m)
    sizes = z.sum(1)
    # sizes 1 and 9 (10 subsets each) fit the budget at their share of the kernel's mass: enumerated
    for s in (1, m - 1):
        rows = z[sizes == s]
        assert rows.unique(dim=0).shape[0] == math.comb(m, s)
        torch.testing.assert_close(w[sizes == s], shapley_kernel(m, sizes[sizes == s]))
    # the sampled rest shares the rest of the kernel's mass; every row is non-trivial
    assert ((sizes > 0) & (sizes < m)).all()
    total = sum((m - 1) / (s * (m - s)) for s in range(1, m))
    torch.testing.assert_close(w.sum().item(), total, rtol=1e-9, atol=0)


# -- linear models: both recover w_i (x_i - b_i) ------------------------------------------------------
@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_linear_model_effects_are_recovered(method: str) -> None:
    f = 8
    model = nn.Linear(f, 2).double()
    x = torch.randn(4, f, dtype=torch.float64)
    base = torch.randn(f, dtype=torch.float64)
    opts = {"alpha": 0.0} if method == "lime" else {"n_samples": 120}  # sampled, still exact here
    ex = ns.explain(model, x, target=1, method=method, baseline=base, **opts)
    want = model.weight[1].detach() * (x - base)
    assert (ex.attributions - want).abs().max().item() <= 1e-6


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_a_background_averages_the_switched_off_values(method: str) -> None:
    f = 6
    model = nn.Linear(f, 1).double()
    x = torch.randn(2, f, dtype=torch.float64)
    background = torch.randn(5, f, dtype=torch.float64)
    opts = {"alpha": 0.0, "n_samples": 200} if method == "lime" else {}
    ex = ns.explain(model, x, target=0, method=method, background=background, **opts)
    want = model.weight[0].detach() * (x - background.mean(0))
    assert (ex.attributions - want).abs().max().item() <= 1e-6


# -- LIME ----------------------------------------------------------------------------------------------
def test_weighted_ridge_matches_sklearn() -> None:
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    z = (torch.rand(200, 7, generator=g) < 0.5).double()
    y = torch.randn(200, 2, generator=g, dtype=torch.float64)
    w = torch.rand(200, generator=g, dtype=torch.float64)
    beta, b0, r2 = weighted_ridge(z, y, w, alpha=1.0)
    for j in range(2):
        ref = Ridge(alpha=1.0).fit(z.numpy(), y[:, j].numpy(), sample_weight=w.numpy())
        torch.testing.assert_close(beta[j], torch.from_numpy(ref.coef_), rtol=0, atol=1e-10)
        assert abs(b0[j].item() - ref.intercept_) <= 1e-10
        assert abs(r2[j].item() - ref.score(z.numpy(), y[:, j].numpy(), sample_weight=w.numpy())) <= 1e-10


def test_lime_kernel_is_exponential_on_the_cosine_distance() -> None:
    z = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    k = lime_kernel(z, "cosine", 0.5)
    d1 = 1 - 1 / (1 * 2)  # cos(z, 1) = |z| / (sqrt|z| sqrt M) = 1/2
    torch.testing.assert_close(
        k, torch.tensor([1.0, math.exp(-(d1**2) / 0.25), math.exp(-1 / 0.25)]).double()
    )
    ke = lime_kernel(z, "euclidean", 2.0)
    torch.testing.assert_close(ke, torch.tensor([1.0, math.exp(-3 / 4), math.exp(-4 / 4)]).double())


def test_lime_samples_include_the_instance_and_are_seeded() -> None:
    model = _mlp(10)
    x = torch.randn(2, 10)
    a = ns.explain(model, x, target=0, method="lime", n_samples=300, seed=5)
    b = ns.explain(model, x, target=0, method="lime", n_samples=300, seed=5)
    c = ns.explain(model, x, target=0, method="lime", n_samples=300, seed=6)
    assert torch.equal(a.attributions, b.attributions)
    assert not torch.equal(a.attributions, c.attributions)
    assert a.meta["r2"].shape == (2,)


# -- tokens -------------------------------------------------------------------------------------------
class BagOfWords(nn.Module):
    """Sum of token embeddings (the pad id 0 embeds to zero), then a linear layer: additive in tokens."""

    def __init__(self, vocab: int = 40, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(vocab, 6, mode="sum", padding_idx=0)
        self.fc = nn.Linear(6, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(ids))


@pytest.mark.parametrize("method", ["lime", "kernel_shap", "occlusion"])
def test_token_attributions_are_each_tokens_contribution(method: str) -> None:
    torch.manual_seed(0)
    model = BagOfWords()
    ids = torch.randint(1, 40, (2, 7))
    opts = {"alpha": 0.0} if method == "lime" else {}
    ex = ns.explain(model, ids, target=2, method=method, baseline=0, **opts)
    with torch.no_grad():
        contrib = model.emb.weight[ids] @ model.fc.weight[2]  # [B, T]
    assert ex.attributions.shape == ids.shape
    assert (ex.attributions - contrib).abs().max().item() <= 1e-5


def test_feature_mask_keeps_special_tokens_fixed() -> None:
    torch.manual_seed(0)
    model = BagOfWords()
    ids = torch.randint(1, 40, (1, 6))
    mask = torch.tensor([-1, 0, 1, 1, 2, -1])  # [CLS] a (b c) d [SEP]: c and b move together
    ex = ns.explain(model, ids, target=0, method="kernel_shap", feature_mask=mask, baseline=0)
    with torch.no_grad():
        contrib = model.emb.weight[ids[0]] @ model.fc.weight[0]
    a = ex.attributions[0]
    assert a[0] == 0
    assert a[5] == 0
    assert abs(a[1].item() - contrib[1].item()) <= 1e-5
    assert abs(a[2].item() - (contrib[2] + contrib[3]).item()) <= 1e-5
    assert a[2] == a[3]


# -- features and errors ------------------------------------------------------------------------------
def test_slic_superpixels_follow_the_image() -> None:
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0, :, :16] = 1.0  # red left half, blue right half
    img[:, 2, :, 16:] = 1.0
    f = make_features(img, n_segments=4, compactness=10.0)
    assert f.kind == "slic"
    assert f.labels.shape == (1, 1, 32, 32)
    left, right = f.labels[0, 0, :, :16], f.labels[0, 0, :, 16:]
    assert set(left.unique().tolist()).isdisjoint(right.unique().tolist())
    assert f.counts[0] == len(f.labels.unique())


def test_lime_on_image_superpixels_is_constant_per_superpixel() -> None:
    model = tiny_cnn()
    x = torch.rand(1, 3, 16, 16)
    x[:, :, :, :8] += 1.0
    ex = ns.explain(model, x, target=0, method="lime", n_samples=200, n_segments=6)
    labels = ex.meta["features"][0, 0]
    for s in labels.unique():
        v = ex.attributions[0][:, labels == s]
        assert torch.allclose(v, v.flatten()[0].expand_as(v))
    assert len(ex.meta["coefficients"][0]) == len(labels.unique())


def test_perturbation_errors_name_the_argument() -> None:
    model = _mlp(4)
    x = torch.randn(2, 4)
    with pytest.raises(ArgumentError, match="features"):
        ns.explain(model, x, method="lime", features="grid")
    with pytest.raises(ArgumentError, match="features"):
        ns.explain(model, x, method="kernel_shap", features="superpixels")
    with pytest.raises(ArgumentError, match="background"):
        ns.explain(model, x, method="kernel_shap", background=torch.randn(3, 5))
    with pytest.raises(ArgumentError, match="feature_mask"):
        ns.explain(model, x, method="lime", feature_mask=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ArgumentError, match="n_samples"):
        ns.explain(model, x, method="lime", n_samples=1)
    with pytest.raises(TargetError, match="out of range"):
        ns.explain(model, x, target=7, method="kernel_shap")
    with pytest.raises(ArgumentError, match="inputs"):
        ns.explain(model, x, method="rise")


def test_methods_leave_a_training_model_as_it_was(untouched) -> None:
    model = tiny_cnn().train()
    model.features[0].weight.requires_grad_(False)
    x = torch.rand(2, 3, 16, 16)
    u = untouched(model)
    for method, opts in [
        ("occlusion", {"window": 8}),
        ("rise", {"n_masks": 20}),
        ("lime", {"features": "grid", "grid": 2, "n_samples": 20}),
        ("kernel_shap", {"features": "grid", "grid": 2}),
    ]:
        ns.explain(model, x, method=method, **opts)
        u.check()
    assert model.training
    assert not model.features[0].weight.requires_grad


class Boom(RuntimeError):
    pass


class RaisesAfter(nn.Module):
    """Raises inside forward once ``calls`` forwards have run (so it fails mid-way through the passes)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls -= 1
        if self.calls < 0:
            raise Boom("raised inside forward")
        return self.net(x)


@pytest.mark.parametrize("method", ["occlusion", "rise", "lime", "kernel_shap"])
def test_a_forward_that_raises_mid_way_leaves_the_model_as_it_was(method: str, untouched) -> None:
    model = RaisesAfter(calls=2)
    u = untouched(model)
    x = torch.rand(2, 3, 8, 8)
    opts = {"max_batch": 4} | ({"features": "grid", "grid": 2} if method in ("lime", "kernel_shap") else {})
    with pytest.raises(Boom):
        ns.explain(model, x, target=1, method=method, **opts)
    u.check()


def test_a_callable_target_is_scored_as_given() -> None:
    model = _mlp(5)
    x = torch.randn(3, 5)
    ex = ns.explain(model, x, target=lambda out: out[:, 0] - out[:, 2], method="kernel_shap")
    with torch.no_grad():
        gap = (model(x)[:, 0] - model(x)[:, 2]) - (
            model(torch.zeros(1, 5))[:, 0] - model(torch.zeros(1, 5))[:, 2]
        )
    assert ex.target is None
    torch.testing.assert_close(ex.attributions.sum(1), gap, atol=1e-5, rtol=0)


def test_max_batch_sets_the_cpu_chunk_and_changes_no_value(monkeypatch) -> None:
    """On the CPU ``max_batch`` is taken as given (above 256, the cap of automatic image chunks, too),
    bounded only by memory, and the values do not depend on how the coalitions are split into forwards
    (several full chunks reuse the classes gathered for the first)."""
    from netsight.explain import _common, _features

    model = _mlp(6)
    x = torch.randn(4, 6)
    auto = _features.rows_per_chunk(model, x, None)
    assert auto > 1000  # a 6-column MLP row is ~100 bytes: thousands per 2 MiB
    assert _features.rows_per_chunk(model, x, 1000) == 1000
    assert _features.rows_per_chunk(model, x, 3) == 3
    monkeypatch.setattr(_common, "free_bytes", lambda device: 10**6)
    bounded = _features.rows_per_chunk(model, x, 10**9)
    assert 1 <= bounded < 10**6  # 30 % of a megabyte holds a few thousand rows, not a billion
    monkeypatch.undo()
    with pytest.raises(ArgumentError, match=r"max_batch: expected a positive int .* got 0"):
        _features.rows_per_chunk(model, x, 0)
    calls: list[int] = []
    real = _features.masked_forwards

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["chunk"] * kwargs.get("items_per_id", 1))
        return real(*args, **kwargs)

    monkeypatch.setattr(_features, "masked_forwards", spy)
    bg = torch.randn(5, 6)
    runs = {
        mb: ns.explain(model, x, target=1, method="kernel_shap", background=bg, n_samples=200, max_batch=mb)
        for mb in (None, 100, 7)
    }
    assert calls[1] == 100 < calls[0]  # 5 whole coalitions (4 rows x 5 background rows) per forward
    assert calls[2] == 7  # fewer items than a coalition holds: the per-item path
    for mb in (100, 7):
        torch.testing.assert_close(runs[mb].attributions, runs[None].attributions, rtol=1e-5, atol=1e-6)
