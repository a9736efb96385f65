"""The explain core: registry, targets, chunking, Explanation, default layers, state restoration."""

from __future__ import annotations

import pytest
import torch
from _explain_models import TinyCNN
from torch import nn

import netsight as ns
from netsight.errors import ArgumentError, SelectorError, TargetError, UnknownNameError
from netsight.explain import _common


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


def test_list_and_get_methods() -> None:
    cams = ns.list_methods("*cam*")
    assert cams == sorted(cams)
    assert {
        "grad_cam",
        "grad_cam_pp",
        "xgrad_cam",
        "layer_cam",
        "hires_cam",
        "score_cam",
        "eigen_cam",
    } <= set(cams)
    assert "saliency" not in cams
    assert set(ns.list_methods(kind="layer")) >= {"grad_cam", "score_cam"}
    info = ns.get_method("integrated_gradients")
    assert info.kind == "gradient"
    assert "Sundararajan" in info.paper
    with pytest.raises(UnknownNameError, match=r"Unknown method 'gradcam'\. Did you mean 'grad_cam'"):
        ns.get_method("gradcam")
    with pytest.raises(ArgumentError, match="kind"):
        ns.list_methods(kind="nope")


def test_register_refuses_a_duplicate_name() -> None:
    from netsight.explain import register

    with pytest.raises(ArgumentError, match="already registered"):
        register("saliency", kind="gradient", passes="-", summary="-", paper="-")(lambda *a, **k: None)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (10, r"class 10 is out of range .* 10 classes; valid classes are 0\.\.9"),
        (-1, "class -1 is negative"),
        ([1, 2], r"got 2 classes \[1, 2\] for a batch of 3"),
        (torch.tensor([0.5, 1.0, 2.0]), "integer class indices"),
        ("cat", "cannot use str"),
        (True, "bool"),
    ],
)
def test_bad_targets_name_the_value_and_the_range(model, target, match) -> None:
    x = torch.randn(3, 3, 8, 8)
    with pytest.raises(TargetError, match=match):
        ns.explain(model, x, target=target, method="saliency")


def test_target_forms(model) -> None:
    x = torch.randn(3, 3, 8, 8)
    pred = model(x).argmax(1)
    assert ns.explain(model, x, method="saliency").target.tolist() == pred.tolist()
    assert ns.explain(model, x, target=4, method="saliency").target.tolist() == [4, 4, 4]
    assert ns.explain(model, x, target=[1, 2, 3], method="saliency").target.tolist() == [1, 2, 3]
    assert ns.explain(model, x, target=torch.tensor([3, 2, 1]), method="grad_cam").target.tolist() == [
        3,
        2,
        1,
    ]
    ex = ns.explain(model, x, target=lambda out: out[:, 1] - out[:, 2], method="saliency", abs=False)
    assert ex.target is None
    # the callable's score, by hand
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    (g,) = torch.autograd.grad((out[:, 1] - out[:, 2]).sum(), xi)
    torch.testing.assert_close(ex.attributions, g)
    with pytest.raises(TargetError, match="one score per sample"):
        ns.explain(model, x, target=lambda out: out, method="saliency")


def test_unknown_option_and_layer_misuse(model) -> None:
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(
        ArgumentError, match=r"stepz: integrated_gradients has no option 'stepz'\. Did you mean 'steps'"
    ):
        ns.explain(model, x, method="integrated_gradients", stepz=3)
    with pytest.raises(ArgumentError, match="attributes to the input"):
        ns.explain(model, x, method="saliency", layer="features.0")
    with pytest.raises(SelectorError, match="features"):
        ns.explain(model, x, method="grad_cam", layer="featurez.5")
    with pytest.raises(ArgumentError, match="inputs"):
        ns.explain(model, [1, 2, 3], method="saliency")
    with pytest.raises(ArgumentError, match="max_batch"):
        ns.explain(model, x, method="saliency", max_batch=0)


def test_chunking_gives_the_same_result_and_counts_passes(model) -> None:
    x = torch.randn(7, 3, 8, 8)
    whole = ns.explain(model, x, target=2, method="integrated_gradients", steps=10)
    parts = ns.explain(
        model, x, target=2, method="integrated_gradients", steps=10, max_batch=3, progress=True
    )
    torch.testing.assert_close(whole.attributions, parts.attributions, atol=1e-6, rtol=1e-5)
    # 70 path points in chunks of 3, plus the end points (7 + 7 in chunks of 3)
    assert parts.meta["passes"] == 24 + 3 + 3
    sal = ns.explain(model, x, target=2, method="saliency", max_batch=2)
    assert sal.meta["passes"] == 4


def test_chunk_size_follows_free_memory(model, monkeypatch) -> None:
    x = torch.randn(2, 3, 8, 8)
    per = _common.probe(model, x).leaf_bytes
    assert per == sum(4 * n for n in (8 * 64, 8 * 64, 8 * 64, 16 * 64, 16 * 64, 16 * 64, 16, 10))
    monkeypatch.setattr(_common, "free_bytes", lambda device: 100 * per * 2)
    assert _common.chunk_size(model, x, per_item_bytes=per, fraction=0.5) == 100
    assert _common.chunk_size(model, x, per_item_bytes=per, fraction=0.5, max_batch=7) == 7
    monkeypatch.setattr(_common, "free_bytes", lambda device: 10**15)
    assert _common.chunk_size(model, x) == 256  # the CPU cap


def test_batched_cats_tensors_and_tuples() -> None:
    x = torch.arange(10.0)
    out = _common.batched(lambda c: c * 2, x, chunk=3)
    torch.testing.assert_close(out, x * 2)
    a, b = _common.batched(lambda c, d: (c + d, c - d), (x, x), chunk=4)
    torch.testing.assert_close(a, 2 * x)
    torch.testing.assert_close(b, torch.zeros(10))


def test_default_layers(model) -> None:
    import torchvision

    x = torch.randn(1, 3, 16, 16)
    assert _common.default_layer(model, x) == "features"  # features.5's output, as the Sequential's
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    assert _common.default_layer(vit, torch.randn(1, 3, 32, 32)) == "encoder.layers.encoder_layer_2.ln_1"
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    from netsight.errors import ExplainError

    with pytest.raises(ExplainError, match="no module with a spatial"):
        _common.default_layer(mlp, torch.randn(1, 4))


def test_default_layer_skips_modules_that_run_twice() -> None:
    """A shared module (one ReLU called after each conv) is never the default: its output is a
    different tensor on each call, so a layer method could not pick one (it raises "ran twice")."""

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
            self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.ReLU()
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.act(self.conv2(self.act(self.conv1(x)))))

    torch.manual_seed(0)
    m = Shared().eval()
    x = torch.randn(2, 1, 8, 8)
    assert _common.default_layer(m, x) == "conv2"  # act finishes last with a grid, but runs twice
    ex = ns.explain(m, x, target=1, method="grad_cam")
    assert ex.layer == "conv2"
    # independent: Grad-CAM at conv2 by hand (channel weights = spatial mean of d y / d A)
    a = m.conv2(m.act(m.conv1(x)))
    (g,) = torch.autograd.grad(m.head(m.act(a))[:, 1].sum(), a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True)).detach()
    torch.testing.assert_close(ex.attributions, cam, rtol=1e-5, atol=1e-6)


def test_default_layer_of_a_timm_vit_is_its_last_blocks_norm() -> None:
    """timm's attention returns per-head tensors [B, heads, N, d] from ``attn.q_norm``/``k_norm``; they
    look spatial but are not, so the default is the last block's first norm, as for torchvision."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=5
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    assert _common.default_layer(vit, x) == "blocks.1.norm1"
    ex = ns.explain(vit, x, target=1, method="grad_cam")
    assert ex.attributions.shape == (2, 1, 32, 32)
    assert ex.meta["raw"].shape == (2, 1, 4, 4)  # the 4 x 4 patch grid


def test_a_model_whose_spatial_modules_all_run_twice_is_told_so() -> None:
    from netsight.errors import ExplainError

    class Siamese(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.head = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a, b = self.features(x), self.features(x.flip(-1))
            return self.head((a - b).mean(dim=(2, 3)))

    with pytest.raises(ExplainError, match=r"runs more than once per forward .*'features'"):
        _common.default_layer(Siamese(), torch.randn(1, 1, 8, 8))


def test_to_grid_drops_class_and_register_tokens() -> None:
    t = torch.arange(2 * 21 * 3, dtype=torch.float32).reshape(2, 21, 3)  # 1 cls + 4 reg + 16 patches
    g = _common.to_grid(t, (32, 32))
    assert g.shape == (2, 3, 4, 4)
    torch.testing.assert_close(g[:, :, 0, 0], t[:, 5, :])
    torch.testing.assert_close(g[:, :, 3, 3], t[:, 20, :])


def test_explanation_rendering(model, tmp_path) -> None:
    x = torch.rand(2, 3, 16, 16)
    ex = ns.explain(model, x, target=1, method="grad_cam")
    with pytest.raises(AttributeError):
        ex.method = "x"  # frozen
    over = ex.overlay(x)
    assert over.dtype == torch.uint8
    assert over.shape == (2, 16, 16, 3)
    torch.testing.assert_close(over, ns.render.overlay(x, ex.attributions, cmap="jet", alpha=0.5))
    paths = ex.save(tmp_path / "out", images=x)
    assert [p.name for p in paths] == ["grad_cam_000.png", "grad_cam_001.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = ex._repr_html_()
    assert html.count("data:image/png;base64,") == 2
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig = ex.figure(x)
    assert len(fig.axes) == 2
    plt.close(fig)
    sal = ns.explain(model, x, target=1, method="saliency")
    assert sal._maps().shape == (2, 1, 16, 16)  # channels summed as magnitudes


def _bar_rows(ax) -> list[tuple[str, float, str]]:  # type: ignore[no-untyped-def]
    """(label, width, colour) of each bar, top to bottom, read back from the drawn axes."""
    from matplotlib.colors import to_hex

    label_at = {round(float(p), 6): t.get_text() for p, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    rows = []
    for bar in ax.patches:
        y = round(bar.get_y() + bar.get_height() / 2, 6)
        rows.append((y, label_at[y], bar.get_width(), to_hex(bar.get_facecolor())))
    return [(label, width, colour) for _, label, width, colour in sorted(rows, key=lambda r: -r[0])]


def test_tabular_and_token_attributions_draw_as_bar_charts(tmp_path) -> None:
    """The top features by magnitude, largest on top, red up and blue down, the rest summed in grey:
    each bar read back from the figure against a ranking computed here."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from netsight.render import _bars

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(3, 16)
    ex = ns.explain(mlp, x, target=1, method="kernel_shap", background=torch.randn(5, 16), n_samples=300)
    names = [f"col{j}" for j in range(16)]
    fig = ex.figure(names=names, top=5)
    assert len(fig.axes) == 3
    for i, ax in enumerate(fig.axes):
        v = [float(a) for a in ex.attributions[i]]
        order = sorted(range(16), key=lambda j: -abs(v[j]))
        want = [(names[j], v[j]) for j in order[:5]] + [("11 other features", sum(v[j] for j in order[5:]))]
        got = _bar_rows(ax)
        assert [label for label, _, _ in got] == [label for label, _ in want]
        assert [w for _, w, _ in got] == pytest.approx([w for _, w in want], rel=1e-6, abs=1e-9)
        colours = [c for _, _, c in got]
        assert colours[:5] == [_bars.POSITIVE if w > 0 else _bars.NEGATIVE for _, w in want[:5]]
        assert colours[5] == _bars.OTHERS
        assert f"base {float(ex.meta['base_value'][i]):.3g}" in ax.get_title()
    plt.close(fig)
    paths = ex.save(tmp_path / "bars")
    assert [p.name for p in paths] == ["kernel_shap_000.png", "kernel_shap_001.png", "kernel_shap_002.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert ex._repr_html_().count("data:image/png;base64,") == 1

    tokens = [[f"t{i}_{j}" for j in range(16)] for i in range(3)]  # one list per sample (texts differ)
    fig = ex.figure(names=tokens, top=16, max_samples=2)
    assert len(fig.axes) == 2
    assert _bar_rows(fig.axes[1])[0][0].startswith("t1_")
    assert len(fig.axes[1].patches) == 16  # every feature drawn: no "others" bar
    plt.close(fig)
    fig = ex.figure(top=3)
    assert _bar_rows(fig.axes[0])[0][0].startswith("x[")
    plt.close(fig)
    from netsight.errors import ArgumentError

    with pytest.raises(ArgumentError, match="names: got 2 names for 16 features"):
        ex.figure(names=["a", "b"])
    with pytest.raises(ArgumentError, match="top: expected a positive int"):
        ex.figure(top=0)


def test_state_restored_when_a_method_raises(model, untouched) -> None:
    """An in-place ReLU patched by guided backprop comes back, hooks go, flags stay, also on error."""
    model.features[1].train()
    u = untouched(model)
    x = torch.randn(2, 3, 8, 8)

    def bad_target(out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("target callable failed")

    with pytest.raises(RuntimeError, match="target callable failed"):
        ns.explain(model, x, target=bad_target, method="guided_backprop")
    u.check()
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == [True, True]
    assert model.features[1].training
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_runs_on_the_inputs_device_and_no_grad_context(model) -> None:
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():  # methods enable gradients themselves
        ex = ns.explain(model, x, target=0, method="saliency")
    assert ex.attributions.device == x.device
    assert ex.attributions.abs().sum() > 0
