"""Rollout, flow and gradient-weighted attention against reference implementations written here from the
papers' equations (Abnar & Zuidema 2020; Chefer, Gur & Wolf 2021), with networkx as the max-flow oracle."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import netsight as ns
from netsight.attention import Rollout, attention_flow, grad_rollout, rollout
from netsight.errors import ArgumentError, TargetError


def _random_maps(layers: int, b: int, h: int, t: int) -> list[torch.Tensor]:
    return [torch.softmax(torch.randn(b, h, t, t) * 2, dim=-1) for _ in range(layers)]


def _hat(a: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema: A_res = 0.5 W_att + 0.5 I, rows renormalised (W_att averaged over heads)."""
    res = 0.5 * a.mean(axis=0) + 0.5 * np.eye(a.shape[-1])
    return res / res.sum(axis=-1, keepdims=True)


def rollout_reference(maps: list[torch.Tensor]) -> np.ndarray:
    """Ã(l_i) = A(l_i) Ã(l_{i-1}), Ã(l_1) = A(l_1), per sample."""
    out = []
    for s in range(maps[0].shape[0]):
        r = _hat(maps[0][s].double().numpy())
        for a in maps[1:]:
            r = _hat(a[s].double().numpy()) @ r
        out.append(r)
    return np.stack(out)


def flow_reference(maps: list[torch.Tensor], sample: int, row: int) -> np.ndarray:
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    n_layers, t = len(maps), maps[0].shape[-1]
    for layer in range(1, n_layers + 1):
        hat = _hat(maps[layer - 1][sample].double().numpy())
        for i in range(t):
            for j in range(t):
                g.add_edge((layer, i), (layer - 1, j), capacity=float(hat[i, j]))
    return np.array([nx.maximum_flow_value(g, (n_layers, row), (0, j)) for j in range(t)])


def chefer_reference(maps: list[torch.Tensor], grads: list[torch.Tensor]) -> np.ndarray:
    """R = I; R <- R + E_h[(grad * A)^+] R, per layer (Chefer et al. 2021, eqs. 5-6)."""
    out = []
    for s in range(maps[0].shape[0]):
        t = maps[0].shape[-1]
        r = np.eye(t)
        for a, g in zip(maps, grads):
            cam = np.maximum(g[s].double().numpy() * a[s].double().numpy(), 0).mean(axis=0)
            r = r + cam @ r
        out.append(r)
    return np.stack(out)


def test_rollout_equals_the_paper_equations() -> None:
    maps = _random_maps(4, 2, 3, 6)
    got = rollout(maps)
    np.testing.assert_allclose(got.double().numpy(), rollout_reference(maps), atol=1e-6)
    acc = Rollout()
    for a in maps:
        acc.add(a.mean(1))  # head-fused maps roll out the same
    np.testing.assert_allclose(acc.result.double().numpy(), rollout_reference(maps), atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(2, 6))


def test_flow_equals_networkx_max_flow() -> None:
    maps = _random_maps(3, 2, 2, 5)
    got = attention_flow(maps, rows=[0, 3])
    assert got.shape == (2, 2, 5)
    for s in range(2):
        for i, row in enumerate([0, 3]):
            np.testing.assert_allclose(got[s, i].double().numpy(), flow_reference(maps, s, row), atol=1e-5)


def test_grad_rollout_equals_chefer_equations() -> None:
    maps = _random_maps(3, 2, 4, 5)
    grads = [torch.randn_like(a) for a in maps]
    np.testing.assert_allclose(
        grad_rollout(maps, grads).double().numpy(), chefer_reference(maps, grads), atol=1e-5
    )
    with pytest.raises(ArgumentError, match="one gradient per attention map"):
        grad_rollout(maps, grads[:2])


class _Classifier(nn.Module):
    """A small encoder classifier reading its class token (position 0)."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.enc(x)[:, 0])


def test_streamed_rollout_and_explain_equal_reference_on_full_maps(untouched) -> None:
    model = _Classifier(3).eval()
    x = torch.randn(2, 7, 16)
    full = ns.attention(model, x)
    want = rollout_reference([full[n] for n in full.names])
    streamed = ns.attention(model, x, rollout=True, keep=False, chunk_rows=2)
    assert streamed.maps == {}
    assert streamed.rollout is not None
    np.testing.assert_allclose(streamed.rollout.double().numpy(), want, atol=1e-5)
    u = untouched(model)
    ex = ns.explain(model, x, method="attention_rollout")
    u.check()
    assert ex.attributions.shape == (2, 7)
    assert ex.meta["token"] == 0
    np.testing.assert_allclose(ex.attributions.double().numpy(), want[:, 0], atol=1e-5)
    with pytest.raises(TargetError, match="class-agnostic"):
        ns.explain(model, x, target=1, method="attention_rollout")


def test_flow_explain_equals_networkx_reference(untouched, monkeypatch) -> None:
    model = _Classifier(2).eval()
    x = torch.randn(1, 5, 16)
    full = ns.attention(model, x)
    maps = [full[n] for n in full.names]
    u = untouched(model)
    ex = ns.explain(model, x, method="attention_flow")
    u.check()
    np.testing.assert_allclose(ex.attributions[0].double().numpy(), flow_reference(maps, 0, 0), atol=1e-5)
    from netsight.explain import attention_flow as flow_module

    monkeypatch.setattr(flow_module, "MAX_NODES", 10)
    with pytest.raises(ArgumentError, match="attention_rollout"):
        ns.explain(model, x, method="attention_flow")


def test_grad_attention_on_mha_equals_explicit_autograd(untouched) -> None:
    model = _Classifier(1).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # a frozen model: the method must still reach the attention gradients
    x = torch.randn(2, 5, 16)
    u = untouched(model)
    ex = ns.explain(model, x, target=2, method="grad_attention")
    u.check()
    # reference: the same network written out by hand, with the probabilities as a leaf of the graph
    layer = model.enc.layers[0]
    mha = layer.self_attn
    e, h, d = 16, 4, 4
    with torch.no_grad():
        w, b = mha.in_proj_weight, mha.in_proj_bias
        q = (x @ w[:e].T + b[:e]).view(2, 5, h, d).transpose(1, 2)
        k = (x @ w[e : 2 * e].T + b[e : 2 * e]).view(2, 5, h, d).transpose(1, 2)
        v = (x @ w[2 * e :].T + b[2 * e :]).view(2, 5, h, d).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    a = a.clone().requires_grad_(True)
    o = mha.out_proj((a @ v).transpose(1, 2).reshape(2, 5, e))
    hdn = layer.norm1(x + o)
    hdn = layer.norm2(hdn + layer.linear2(layer.activation(layer.linear1(hdn))))
    score = model.fc(hdn[:, 0])[:, 2].sum()
    (g,) = torch.autograd.grad(score, a)
    want = chefer_reference([a.detach()], [g])
    np.testing.assert_allclose(ex.meta["relevance"].double().numpy(), want, atol=1e-5)
    np.testing.assert_allclose(ex.attributions.double().numpy(), want[:, 0], atol=1e-5)
    assert ex.target.tolist() == [2, 2]


def test_grad_attention_on_bert_equals_output_attentions_gradients(untouched) -> None:
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        num_labels=3, attn_implementation="sdpa",
    )  # fmt: skip
    model = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(0, 60, (2, 6))
    ref = copy.deepcopy(model)
    ref.config._attn_implementation = "eager"
    out = ref(input_ids=ids, output_attentions=True)
    grads = torch.autograd.grad(out.logits[:, 1].sum(), out.attentions)
    want = chefer_reference([a.detach() for a in out.attentions], list(grads))
    u = untouched(model)
    ex = ns.explain(model, ids, target=1, method="grad_attention")
    u.check()
    assert model.config._attn_implementation == "sdpa"
    np.testing.assert_allclose(ex.meta["relevance"].double().numpy(), want, atol=1e-5)


def test_causal_model_explains_its_last_token() -> None:
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=60, n_embd=16, n_layer=2, n_head=4, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    model = GPT2Model(cfg).eval()
    ids = torch.randint(0, 60, (1, 6))
    ex = ns.explain(model, ids, method="attention_rollout")
    assert ex.meta["token"] == 5
    full = ns.attention(model, ids)
    np.testing.assert_allclose(
        ex.attributions.double().numpy(), rollout_reference([full[n] for n in full.names])[:, 5], atol=1e-5
    )


def test_vit_relevance_on_the_patch_grid_and_upsampled() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    for method in ("attention_rollout", "grad_attention"):
        ex = ns.explain(vit, x, method=method)
        tokens = ex.meta["tokens"]
        assert tokens.shape == (2, 17)
        assert ex.meta["raw"].shape == (2, 1, 4, 4)
        assert torch.equal(ex.meta["raw"].reshape(2, 16), tokens[:, 1:])  # class token dropped
        assert ex.attributions.shape == (2, 1, 32, 32)
        assert ex.overlay(x).shape == (2, 32, 32, 3)


def test_timm_register_tokens_are_dropped_from_the_grid() -> None:
    timm = pytest.importorskip("timm")
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_heads=2,
        embed_dim=16, reg_tokens=2, num_classes=5,
    ).eval()  # fmt: skip
    x = torch.randn(1, 3, 32, 32)
    ex = ns.explain(vit, x, method="attention_rollout")
    assert ex.meta["tokens"].shape == (1, 19)
    assert torch.equal(ex.meta["raw"].reshape(1, 16), ex.meta["tokens"][:, 3:])
    ex = ns.explain(vit, x, method="grad_attention", target=4)
    assert ex.attributions.shape == (1, 1, 32, 32)
    assert float(ex.meta["tokens"][:, 3:].abs().sum()) > 0


def test_flow_with_a_progress_bar_gives_the_same_values() -> None:
    maps = _random_maps(2, 1, 2, 4)
    assert torch.equal(attention_flow(maps, rows=[0], progress=True), attention_flow(maps, rows=[0]))
