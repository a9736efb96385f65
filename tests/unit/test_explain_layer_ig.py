"""layer_integrated_gradients: integrated gradients through a layer's output (token embeddings), against
Captum's LayerIntegratedGradients as the oracle, and against completeness (Sundararajan et al. 2017)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

import netsight as ns
from netsight.errors import ArgumentError


class TextClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(ids)).mean(1))


def _text() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return TextClassifier().eval(), torch.randint(1, 50, (3, 7), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("rule", ["gauss_legendre", "riemann_right"])
def test_matches_captum_layer_integrated_gradients(rule: str, untouched) -> None:
    model, ids = _text()
    u = untouched(model)
    target = [0, 1, 2]
    ex = ns.explain(
        model, ids, target=target, method="layer_integrated_gradients", rule=rule, steps=20, max_batch=8
    )
    u.check()
    assert ex.layer == "embed"  # the first nn.Embedding by default
    assert ex.attributions.shape == ids.shape  # one score per token
    captum_rule = {"gauss_legendre": "gausslegendre", "riemann_right": "riemann_right"}[rule]
    ref = LayerIntegratedGradients(model, model.embed).attribute(
        ids, baselines=torch.zeros_like(ids), target=torch.tensor(target), n_steps=20, method=captum_rule
    )
    torch.testing.assert_close(ex.meta["layer_attributions"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ex.attributions, ref.sum(-1), atol=1e-6, rtol=1e-5)


def test_completeness_at_the_layer_and_a_baseline_token() -> None:
    model, ids = _text()
    ex = ns.explain(model, ids, target=1, method="layer_integrated_gradients", baseline=7, steps=64)
    with torch.no_grad():
        gap = model(ids)[:, 1] - model(torch.full_like(ids, 7))[:, 1]
    torch.testing.assert_close(ex.attributions.sum(dim=1), gap, atol=1e-4, rtol=1e-4)
    assert (ex.meta["completeness_error"] <= 1e-4).all()


def test_a_hugging_face_model_with_its_attention_mask_matches_captum() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        num_labels=3, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    ids = torch.randint(3, 40, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    ids[mask == 0] = 0

    class Logits(nn.Module):  # Captum wants a tensor output
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits

    ex = ns.explain(
        model, ids, target=2, method="layer_integrated_gradients", layer="bert.embeddings",
        forward_kwargs={"attention_mask": mask}, steps=16, max_batch=5,
    )  # fmt: skip
    wrapped = Logits()
    ref = LayerIntegratedGradients(wrapped, wrapped.bert.bert.embeddings).attribute(
        ids, baselines=torch.zeros_like(ids), target=2, additional_forward_args=(mask,), n_steps=16
    )
    torch.testing.assert_close(ex.meta["layer_attributions"], ref, atol=1e-6, rtol=1e-5)


def test_bad_arguments_name_the_fix() -> None:
    model, ids = _text()
    with pytest.raises(ArgumentError, match=r"baseline: expected a token id"):
        ns.explain(model, ids, method="layer_integrated_gradients", baseline="pad")
    with pytest.raises(ArgumentError, match=r"baseline: shape \(2,\)"):
        ns.explain(model, ids, method="layer_integrated_gradients", baseline=torch.zeros(2, dtype=torch.long))
    mlp = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ArgumentError, match=r"no nn.Embedding"):
        ns.explain(mlp, torch.randn(2, 4), method="layer_integrated_gradients")
    assert ns.hooks_on(model) == {}
