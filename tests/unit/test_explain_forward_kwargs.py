"""``forward_kwargs=``: keyword arguments of the model's forward, passed to every call of every method.

The oracle: the same method on a wrapper module that closes over one sample's values, run one sample
at a time (``B = 1``), so that it cannot share a bug in how the per-sample values are expanded to the
rows of a call (path points, noisy copies, masked copies) or split into chunks. A second check runs
every method on a model that infers, from each row it sees, which sample the row was made from, and
compares that with the per-sample value it was given (noise and random draws included).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import netsight as ns
from netsight.capture import hooks_on
from netsight.errors import ArgumentError

B, C, H, W, CLASSES = 3, 3, 8, 8, 5

#: small options so that every method runs in a moment; max_batch is set per test
FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 8},
    "expected_gradients": {"samples": 4},
    "smoothgrad": {"samples": 4, "sigma": 0.0},
    "smoothgrad_sq": {"samples": 4, "sigma": 0.0},
    "vargrad": {"samples": 4, "sigma": 0.0},
    "rise": {"n_masks": 40, "cells": 3},
    "lime": {"features": "grid", "grid": 2, "n_samples": 24},
    "kernel_shap": {"features": "grid", "grid": 2, "n_samples": 30},
    "occlusion": {"window": 4, "stride": 4},
}
#: draws that the wrapper's run cannot repeat, sample by sample, on a non-linear model (the
#: expected gradients' path positions, per draw): run on a model linear in the input instead
LINEAR_ONLY = {"expected_gradients"}
#: what the explain methods with a class score explain, on images; the attention ones have their own
#: tests, and layer_integrated_gradients (token ids) its own against Captum (test_explain_layer_ig.py)
KINDS = ("gradient", "layer", "perturbation")
METHODS = [
    n for n in ns.list_methods() if ns.get_method(n).kind in KINDS and ns.get_method(n).inputs == "image"
]


class Scaled(nn.Module):
    """``forward(x, scale, mask, bias=0.0, offset=None)``: a per-sample ``scale [B]`` and spatial
    ``mask [B, H, W]`` act before the last conv (the default layer), a float ``bias`` and a tensor
    ``offset [CLASSES]`` (first dimension not B) are added to the logits."""

    def __init__(self, linear: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(C, 4, 3, padding=1)
        self.act1 = nn.Identity() if linear else nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.Identity() if linear else nn.ReLU()
        self.fc = nn.Linear(6 * H * W, CLASSES)

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        mask: torch.Tensor,
        bias: float = 0.0,
        *,
        offset: torch.Tensor | None = None,
        explode: bool = False,
    ) -> torch.Tensor:
        h = self.act1(self.conv1(x)) * scale.view(-1, 1, 1, 1) * mask[:, None]
        if explode:
            raise RuntimeError("boom: raised inside forward, after the first layer ran")
        out = self.fc(self.act2(self.conv2(h)).flatten(1)) + bias
        return out if offset is None else out + offset


class Alone(nn.Module):
    """The oracle's model: ``inner`` with one sample's values closed over, for any number of rows."""

    def __init__(self, inner: nn.Module, scale: torch.Tensor, mask: torch.Tensor, **fixed: Any) -> None:
        super().__init__()
        self.inner = inner
        self.scale, self.mask, self.fixed = scale, mask, fixed  # [1], [1, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        out: torch.Tensor = self.inner(x, self.scale.expand(n), self.mask.expand(n, H, W), **self.fixed)
        return out


def _model(linear: bool = False) -> Scaled:
    torch.manual_seed(0)
    return Scaled(linear).eval()


def _data() -> tuple[torch.Tensor, dict[str, Any]]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(B, C, H, W, generator=g)
    scale = torch.tensor([1.0, 2.5, -1.5])  # a negative scale flips the predicted class
    mask = (torch.rand(B, H, W, generator=g) > 0.3).float()
    offset = torch.linspace(-0.02, 0.02, CLASSES)
    return x, {"scale": scale, "mask": mask, "bias": 0.25, "offset": offset}


def _one_at_a_time(
    model: nn.Module, x: torch.Tensor, kw: dict[str, Any], method: str, layer: str | None, **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    maps, classes = [], []
    fixed = {k: v for k, v in kw.items() if k not in ("scale", "mask")}
    for i in range(x.shape[0]):
        alone = Alone(model, kw["scale"][i : i + 1], kw["mask"][i : i + 1], **fixed)
        ex = ns.explain(alone, x[i : i + 1], None, method=method, layer=layer and f"inner.{layer}", **options)
        maps.append(ex.attributions)
        classes.append(ex.target)
    return torch.cat(maps), torch.cat(classes)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_equals_the_wrapper_run_one_sample_at_a_time(method: str) -> None:
    """``target=None`` (each sample's predicted class, which the scale changes), the default layer
    found with the keyword arguments, and chunks of 2 rows that split every sample's rows."""
    model = _model(linear=method in LINEAR_ONLY)
    x, kw = _data()
    options = {**FAST.get(method, {}), "max_batch": 2, "progress": False}
    ex = ns.explain(model, x, None, method=method, forward_kwargs=kw, **options)
    if ns.get_method(method).needs_layer:
        assert ex.layer == "act2"  # the probe forward ran with the keyword arguments
    want, classes = _one_at_a_time(model, x, kw, method, ex.layer, **options)
    assert ex.target is not None
    assert ex.target.tolist() == classes.tolist()
    assert len(set(classes.tolist())) > 1  # the scale did change the predicted class
    err = (ex.attributions - want).abs().max().item()
    assert err <= 1e-5 * max(1.0, want.abs().max().item()), f"{method}: max abs error {err:.2e}"


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"tolerance": 1e-3, "steps": 4, "max_steps": 40}),  # adaptive trapezoid
        ("integrated_gradients", {"rule": "riemann_middle", "tolerance": 3e-3, "steps": 3, "max_steps": 27}),
        ("lime", {"features": "grid", "grid": 2, "n_samples": 24, "max_batch": 7}),  # whole coalitions
        ("kernel_shap", {"features": "grid", "grid": 2, "n_samples": 30, "max_batch": 7}),
        ("occlusion", {"window": 4, "stride": 2, "max_batch": 7}),
        ("rise", {"n_masks": 40, "cells": 3, "max_batch": 7}),
    ],
)
def test_refinement_and_whole_coalition_chunks_equal_the_wrapper(
    method: str, options: dict[str, Any]
) -> None:
    """The other paths: integrated gradients refining some samples only (a sub-batch of the
    arguments), perturbations packing whole coalitions of every sample into one forward."""
    model = _model()
    x, kw = _data()
    options = {"max_batch": 3, **options}
    ex = ns.explain(model, x, None, method=method, forward_kwargs=kw, **options)
    want, classes = _one_at_a_time(model, x, kw, method, None, **options)
    assert ex.target is not None
    assert ex.target.tolist() == classes.tolist()
    torch.testing.assert_close(ex.attributions, want, atol=1e-5, rtol=1e-5)
    if method == "integrated_gradients":  # some samples were refined further than others
        assert len(set(ex.meta["steps"].tolist())) > 1


def test_samples_with_different_feature_counts_get_their_own_values() -> None:
    """Samples are scored in groups of equal feature counts (here sample 0 alone, then 1 and 2): each
    group's calls get the values of its own samples. (KernelSHAP enumerates every coalition of 4 and
    5 features, so no draw depends on the grouping; LIME's draws for a group follow the previous
    group's.)"""
    method = "kernel_shap"
    model = _model()
    x, kw = _data()
    cells = (torch.arange(H)[:, None] // 4 * 2 + torch.arange(W)[None, :] // 4).expand(B, 1, H, W).clone()
    cells[1:, :, :2, :2] = 4  # samples 1 and 2: a fifth feature; sample 0 has four
    options = {"feature_mask": cells, "n_samples": 40, "max_batch": 3}
    ex = ns.explain(model, x, None, method=method, forward_kwargs=kw, **options)
    for i in range(B):
        alone = Alone(model, kw["scale"][i : i + 1], kw["mask"][i : i + 1], bias=0.25, offset=kw["offset"])
        want = ns.explain(
            alone, x[i : i + 1], None, method=method, **{**options, "feature_mask": cells[i : i + 1]}
        )
        torch.testing.assert_close(ex.attributions[i : i + 1], want.attributions, atol=1e-5, rtol=1e-5)


def test_one_sample_repeats_its_values_for_every_row() -> None:
    """``B == 1``: a tensor with first dimension 1 is per sample, repeated for each of the rows."""
    model = _model()
    x, kw = _data()
    one = {"scale": kw["scale"][1:2], "mask": kw["mask"][1:2], "bias": 0.25}
    ex = ns.explain(model, x[1:2], 2, method="integrated_gradients", forward_kwargs=one, steps=7, max_batch=3)
    alone = Alone(model, one["scale"], one["mask"], bias=0.25)
    want = ns.explain(alone, x[1:2], 2, method="integrated_gradients", steps=7)
    torch.testing.assert_close(ex.attributions, want.attributions, atol=1e-6, rtol=1e-5)


def test_deletion_insertion_curves_equal_the_wrapper() -> None:
    from netsight.explain.rise import deletion_insertion

    model = _model()
    x, kw = _data()
    sal = torch.rand(B, 1, H, W, generator=torch.Generator().manual_seed(4))
    both = deletion_insertion(model, x, sal, 1, steps=6, output="logit", max_batch=4, forward_kwargs=kw)
    for i in range(B):
        alone = Alone(model, kw["scale"][i : i + 1], kw["mask"][i : i + 1], bias=0.25, offset=kw["offset"])
        want = deletion_insertion(alone, x[i : i + 1], sal[i : i + 1], 1, steps=6, output="logit")
        for name in ("deletion", "insertion"):
            got, ref = getattr(both, name), getattr(want, name)
            torch.testing.assert_close(got[i : i + 1], ref, atol=1e-5, rtol=1e-5)


def test_integrated_gradients_matches_captum_additional_forward_args() -> None:
    captum = pytest.importorskip("captum.attr")
    model = _model()
    x, kw = _data()
    del kw["offset"]  # Captum expands every tensor argument as per sample, whatever its first dimension
    target = [1, 4, 0]
    ours = ns.explain(
        model, x, target, method="integrated_gradients", steps=16, max_batch=5, forward_kwargs=kw
    )
    theirs = captum.IntegratedGradients(model).attribute(
        x,
        target=target,
        n_steps=16,
        method="gausslegendre",
        additional_forward_args=(kw["scale"], kw["mask"], kw["bias"]),
        internal_batch_size=5,
    )
    err = ((ours.attributions - theirs).abs().max() / theirs.abs().max()).item()
    assert err <= 1e-5, f"max abs error {err:.2e} (relative to the map's max)"


# -- every row gets the values of its own sample, random draws included ------------------------------
class Detective(nn.Module):
    """Sample ``i``'s input is large in channel ``i`` only, which noise, masks, windows and path
    points keep: from each row the model infers its sample and compares with the ``sample`` value it
    was passed for that row. Rows that are all (near) zero (baselines, empty coalitions) say nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, CLASSES)
        self.rows = 0
        self.wrong = 0

    def forward(self, x: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            informative = x.detach().abs().amax(dim=(1, 2, 3)) > 1e-3
            inferred = x.detach().mean(dim=(2, 3)).argmax(dim=1)
            self.rows += int(informative.sum())
            self.wrong += int((informative & (inferred != sample)).sum())
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("method", METHODS)
def test_every_row_gets_its_own_samples_values_with_noise_and_draws(method: str) -> None:
    torch.manual_seed(0)
    model = Detective().eval()
    g = torch.Generator().manual_seed(5)
    x = 0.2 * torch.rand(B, C, H, W, generator=g)
    x[torch.arange(B), torch.arange(B)] += 1.0  # sample i: channel i
    options = {k: v for k, v in FAST.get(method, {}).items() if k != "sigma"}  # with noise
    ns.explain(model, x, 1, method=method, forward_kwargs={"sample": torch.arange(B)}, max_batch=2, **options)
    assert model.rows > 0
    assert model.wrong == 0, f"{method}: {model.wrong} of {model.rows} rows got another sample's values"


# -- the attention methods: one forward of the whole batch ------------------------------------------
def _bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        num_labels=3, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def _padded() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(3, 40, (3, 6), generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize("method", ["attention_rollout", "attention_flow", "grad_attention"])
def test_attention_methods_take_forward_kwargs_as_the_inputs_dict(method: str) -> None:
    model = _bert()
    ids, mask = _padded()
    ex = ns.explain(model, ids, method=method, forward_kwargs={"attention_mask": mask})
    want = ns.explain(model, {"input_ids": ids, "attention_mask": mask}, method=method)
    torch.testing.assert_close(ex.attributions, want.attributions)
    assert ex.meta["token"] == want.meta["token"]
    with pytest.raises(ArgumentError, match=r"forward_kwargs: 'attention_mask' is also a key of the inputs"):
        ns.explain(model, {"input_ids": ids, "attention_mask": mask}, method=method, forward_kwargs={
            "attention_mask": mask
        })  # fmt: skip


class Sentence(nn.Module):
    """The oracle's model: a Hugging Face classifier with one sentence's attention mask closed over."""

    def __init__(self, bert: nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.bert, self.mask = bert, mask  # [1, T]

    def forward(self, rows: torch.Tensor) -> Any:
        return self.bert(rows, attention_mask=self.mask.expand(rows.shape[0], -1))


def test_kernel_shap_on_a_padded_batch_of_a_hugging_face_model() -> None:
    """The case this option is for: token ids and their attention mask, each sentence as if alone."""
    model = _bert()
    ids, mask = _padded()
    ex = ns.explain(model, ids, 1, method="kernel_shap", forward_kwargs={"attention_mask": mask}, max_batch=5)
    assert ex.meta["exact"]
    for i in range(ids.shape[0]):
        alone = ns.explain(Sentence(model, mask[i : i + 1]), ids[i : i + 1], 1, method="kernel_shap")
        torch.testing.assert_close(ex.attributions[i : i + 1], alone.attributions, atol=1e-5, rtol=1e-5)


# -- bad arguments, and the model after an error -----------------------------------------------------
def test_bad_forward_kwargs_say_what_to_pass() -> None:
    model = _model()
    x, kw = _data()
    with pytest.raises(ArgumentError, match=r"forward_kwargs: expected a mapping .* got list"):
        ns.explain(model, x, 1, forward_kwargs=[("scale", kw["scale"])])
    with pytest.raises(ArgumentError, match=r"forward_kwargs: expected a mapping .* got Tensor"):
        ns.explain(model, x, 1, method="occlusion", forward_kwargs=kw["scale"])
    with pytest.raises(ArgumentError, match=r"forward_kwargs: every key must be .* got int 0"):
        ns.explain(model, x, 1, forward_kwargs={0: kw["scale"]})
    elsewhere = {**kw, "scale": kw["scale"].to("meta")}
    for method in ("saliency", "occlusion", "grad_cam"):
        with pytest.raises(ArgumentError, match=r"'scale' is a per-sample tensor .* on meta, .* on cpu"):
            ns.explain(model, x, 1, method=method, forward_kwargs=elsewhere)
    with pytest.raises(ArgumentError, match=r"base_options: holds forward_kwargs"):
        ns.explain(model, x, 1, method="smoothgrad", forward_kwargs=kw, base_options={"forward_kwargs": kw})


def test_a_method_registered_without_the_option_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from netsight.explain import _registry

    def plain(model: nn.Module, inputs: torch.Tensor, target: Any = None, *, layer: Any = None) -> Any:
        return ns.explain(model, inputs, target, method="saliency")

    info = _registry.MethodInfo("plain", "gradient", "1 forward", plain, "test", "test")
    monkeypatch.setitem(_registry._REGISTRY, "plain", info)
    x = torch.randn(2, 4)
    ns.explain(nn.Linear(4, 2), x, 0, method="plain", forward_kwargs=None)  # nothing to refuse
    ns.explain(nn.Linear(4, 2), x, 0, method="plain", forward_kwargs={})
    with pytest.raises(ArgumentError, match=r"forward_kwargs: plain .* does not take keyword arguments"):
        ns.explain(nn.Linear(4, 2), x, 0, method="plain", forward_kwargs={"scale": 2.0})
    with pytest.raises(ArgumentError, match=r"forward_kwargs: plain .* does not take keyword arguments"):
        ns.explain(nn.Linear(4, 2), x, 0, method="plain", forward_kwargs=torch.ones(2))


@pytest.mark.parametrize("method", METHODS)
def test_the_model_is_left_as_it_was_when_forward_raises(method: str, untouched: Any) -> None:
    model = _model()
    model.act1.train()  # a mixed training state
    model.fc.bias.requires_grad_(False)
    u = untouched(model)
    x, kw = _data()
    with pytest.raises(RuntimeError, match="boom"):
        ns.explain(
            model, x, 1, method=method, layer="act2" if ns.get_method(method).needs_layer else None,
            forward_kwargs={**kw, "explode": True}, **FAST.get(method, {}),
        )  # fmt: skip
    u.check()
    assert all(p.grad is None for p in model.parameters())


def test_an_attention_model_is_left_as_it_was_when_forward_raises(untouched: Any) -> None:
    model = _bert()
    u = untouched(model)
    ids, mask = _padded()
    for method in ("attention_rollout", "grad_attention"):
        with pytest.raises(Exception):  # noqa: B017 - whatever the model raises on a bad mask
            ns.explain(model, ids, method=method, forward_kwargs={"attention_mask": mask[:, :4]})
        assert hooks_on(model) == {}
        u.check()
