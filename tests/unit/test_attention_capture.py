"""ns.attention against independent oracles: softmax(QK^T/sqrt(d)) from the module's own weights,
Hugging Face's output_attentions, and explicit recomputation for torchvision and timm ViTs."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import netsight as ns
from netsight.attention import Reduction, find_sources
from netsight.errors import ArgumentError, AttentionError, SelectorError, UnknownNameError


def _softmax_qk(
    mha: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference [B, H, T, T] from the module's in_proj weights; x is [B, T, E] (batch first)."""
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q = x @ w[:e].T + b[:e]
    k = x @ w[e : 2 * e].T + b[e : 2 * e]
    q = q.view(x.shape[0], -1, h, d).transpose(1, 2)
    k = k.view(x.shape[0], -1, h, d).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    if mask is not None:
        s = s + mask
    return torch.softmax(s, dim=-1)


def _encoder(layers: int = 2, nested: bool = False) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=nested).eval()


def test_mha_encoder_maps_equal_softmax_qk_from_weights(untouched) -> None:
    enc = _encoder()
    x = torch.randn(2, 7, 16)
    u = untouched(enc)
    with torch.no_grad():
        before = enc(x)
        h0 = enc.layers[0](x)
    maps = ns.attention(enc, x)
    u.check()
    assert maps.names == ["layers.0.self_attn", "layers.1.self_attn"]
    assert maps["layers.0.self_attn"].shape == (2, 4, 7, 7)
    with torch.no_grad():
        ref0 = _softmax_qk(enc.layers[0].self_attn, x)
        ref1 = _softmax_qk(enc.layers[1].self_attn, h0)
        after = enc(x)
    assert (maps["layers.0.self_attn"] - ref0).abs().max() <= 1e-6
    assert (maps["layers.1.self_attn"] - ref1).abs().max() <= 1e-6
    assert torch.equal(before, after)


def test_mha_capture_leaves_outputs_identical_and_gives_caller_what_it_asked() -> None:
    mha = nn.MultiheadAttention(8, 2).eval()  # sequence-first, called directly with default need_weights
    x = torch.randn(5, 3, 8)
    kpm = torch.zeros(3, 5, dtype=torch.bool)
    kpm[1, 3:] = True
    out_ref, w_ref = mha(x, x, x, key_padding_mask=kpm)  # averaged weights [B, T, S]
    seen = {}

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            out, w = self.attn(t, t, t, key_padding_mask=kpm)
            seen["w"] = w
            return out

    model = Wrap()
    maps = ns.attention(model, x)
    assert torch.equal(seen["w"], w_ref.detach())  # the caller still got the head average it asked for
    full = maps["attn"]
    assert full.shape == (3, 2, 5, 5)
    mask = torch.zeros(3, 1, 1, 5).masked_fill(kpm[:, None, None], float("-inf"))
    ref = _softmax_qk(mha, x.transpose(0, 1), mask).detach()
    assert (full - ref).abs().max() <= 1e-6
    assert (full.mean(1) - w_ref).abs().max() <= 1e-6
    assert full[1, :, :, 3:].abs().max() == 0  # padded keys get no attention
    with torch.no_grad():
        assert torch.equal(model(x), out_ref)


def test_encoder_fast_path_and_nested_tensor_bypassed_then_restored(untouched) -> None:
    enc = _encoder(nested=True)
    assert enc.use_nested_tensor
    x = torch.randn(2, 6, 16)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    u = untouched(enc)
    # eval + no_grad + padding mask: PyTorch's fused fast path with nested tensors (which warns)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        before = enc(x, src_key_padding_mask=pad)
    maps = ns.attention(enc, (x, None, pad))  # warnings are errors here: no nested tensor is made
    u.check()
    assert enc.use_nested_tensor
    assert maps["layers.0.self_attn"].shape == (2, 4, 6, 6)
    mask = torch.zeros(2, 1, 1, 6).masked_fill(pad[:, None, None], float("-inf"))
    with torch.no_grad():
        ref = _softmax_qk(enc.layers[0].self_attn, x, mask)
    assert (maps["layers.0.self_attn"] - ref).abs().max() <= 1e-6
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        after = enc(x, src_key_padding_mask=pad)
    # the fast path leaves padded positions as zeros (nested tensor): compare the real tokens
    assert torch.allclose(before[0], after[0], atol=1e-5)
    assert torch.allclose(before[1, :4], after[1, :4], atol=1e-5)


def test_decoder_self_and_cross_attention() -> None:
    layer = nn.TransformerDecoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    dec = nn.TransformerDecoder(layer, 1).eval()
    tgt, mem = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    maps = ns.attention(dec, (tgt, mem, causal))
    assert maps.names == ["layers.0.self_attn", "layers.0.multihead_attn"]
    sa = maps["layers.0.self_attn"]
    assert sa.shape == (2, 2, 4, 4)
    assert torch.triu(sa[0, 0], 1).abs().max() == 0
    assert maps["layers.0.multihead_attn"].shape == (2, 2, 4, 6)
    with torch.no_grad():
        ref = _softmax_qk(dec.layers[0].self_attn, tgt, causal)
    assert (sa - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("rows", [1, 3, 100])
def test_chunked_recompute_equals_module_weights(rows: int) -> None:
    enc = _encoder()
    x = torch.randn(2, 7, 16)
    full = ns.attention(enc, x)
    red = ns.attention(enc, x, reduce={"rows": [0, -1], "heads": [2, 0]}, chunk_rows=rows)
    for n in full.names:
        want = full[n][:, [2, 0]][:, :, [0, 6]]
        assert red[n].shape == want.shape
        assert (red[n] - want).abs().max() <= 1e-6
    assert red.rows(full.names[0]).tolist() == [0, 6]


def test_reductions_topk_and_mean_match_the_full_map() -> None:
    enc = _encoder()
    x = torch.randn(1, 9, 16)
    full = ns.attention(enc, x)
    top = ns.attention(enc, x, reduce={"rows": [0], "topk": 3}, chunk_rows=4)
    mean = ns.attention(enc, x, reduce="mean")
    for n in full.names:
        f = full[n]
        vals, idx = top.topk(n)
        assert vals.shape == idx.shape == (1, 4, 1, 3)
        ref_vals, ref_idx = f[:, :, :1].topk(3, dim=-1)
        assert (vals - ref_vals).abs().max() <= 1e-6
        assert torch.equal(idx, ref_idx)
        dense = top[n]
        assert dense.shape == (1, 4, 1, 9)
        assert torch.count_nonzero(dense) == 4 * 3
        assert (mean[n][:, 0] - f.mean(1)).abs().max() <= 1e-6
    assert (full.layer_mean() - torch.stack([full[n] for n in full.names]).mean(0)).abs().max() == 0
    assert set(full.head_mean()) == set(full.names)


def _bert(impl: str):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        attn_implementation=impl,
    )
    return BertModel(cfg).eval()


def _gpt2(impl: str):
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=60, n_embd=16, n_layer=2, n_head=4, n_positions=16, attn_implementation=impl,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2Model(cfg).eval()


def _hf_reference(model: nn.Module, inputs: dict) -> tuple:
    """output_attentions on a copy (Hugging Face leaves recorder hooks on the model it runs)."""
    ref = copy.deepcopy(model)
    ref.config._attn_implementation = "eager"
    with torch.no_grad():
        return ref(**inputs, output_attentions=True).attentions


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("make", [_bert, _gpt2], ids=["bert", "gpt2"])
def test_hugging_face_maps_equal_output_attentions(make, impl: str, untouched) -> None:
    pytest.importorskip("transformers")
    model = make(impl)
    ids = torch.randint(0, 60, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    want = _hf_reference(model, inputs)
    u = untouched(model)
    with torch.no_grad():
        before = model(**inputs).last_hidden_state
    maps = ns.attention(model, inputs)
    u.check()
    assert model.config._attn_implementation == impl
    assert len(maps.names) == 2
    for name, a in zip(maps.names, want):
        assert maps[name].shape == (2, 4, 6, 6)
        assert (maps[name] - a).abs().max() <= 1e-6
    with torch.no_grad():
        after = model(**inputs).last_hidden_state
    assert torch.equal(before, after)


def test_bert_names_match_the_issue_and_layers_selects() -> None:
    model = _bert("sdpa")
    ids = torch.randint(0, 60, (1, 5))
    maps = ns.attention(model, ids, layers="encoder.layer.1")
    assert maps.names == ["encoder.layer.1.attention.self"]
    with pytest.raises(SelectorError, match="selects no attention module"):
        ns.attention(model, ids, layers="embeddings")


def test_hugging_face_restored_when_forward_raises(untouched) -> None:
    model = _bert("sdpa")
    u = untouched(model)
    with pytest.raises(IndexError):
        ns.attention(model, torch.full((1, 4), 999))  # token id out of the vocabulary
    u.check()
    assert model.config._attn_implementation == "sdpa"


def test_torchvision_vit_maps_equal_recomputation(untouched) -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    u = untouched(vit)
    with torch.no_grad():
        before = vit(x)
    with ns.capture(vit, layers="encoder.layers.encoder_layer_0.ln_1") as cap:
        vit(x)
    maps = ns.attention(vit, x)
    u.check()
    name = "encoder.layers.encoder_layer_0.self_attention"
    assert maps[name].shape == (2, 2, 17, 17)
    ln = cap["encoder.layers.encoder_layer_0.ln_1"].activation
    with torch.no_grad():
        ref = _softmax_qk(vit.encoder.layers[0].self_attention, ln)
        after = vit(x)
    assert (maps[name] - ref).abs().max() <= 1e-6
    assert torch.equal(before, after)


def test_timm_vit_with_register_tokens(untouched) -> None:
    timm = pytest.importorskip("timm")
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_heads=2,
        embed_dim=16, reg_tokens=2, num_classes=5,
    ).eval()  # fmt: skip
    attn = vit.blocks[0].attn
    fused = attn.fused_attn
    x = torch.randn(2, 3, 32, 32)
    u = untouched(vit)
    with torch.no_grad():
        before = vit(x)
    with ns.capture(vit, layers="blocks.0.norm1") as cap:
        vit(x)
    maps = ns.attention(vit, x)
    u.check()
    assert attn.fused_attn == fused
    assert maps.names == ["blocks.0.attn", "blocks.1.attn"]
    n1 = cap["blocks.0.norm1"].activation
    with torch.no_grad():
        qkv = attn.qkv(n1).reshape(2, 19, 3, 2, 8).permute(2, 0, 3, 1, 4)
        ref = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(8), dim=-1)
        after = vit(x)
    assert maps["blocks.0.attn"].shape == (2, 2, 19, 19)
    assert (maps["blocks.0.attn"] - ref).abs().max() <= 1e-6
    assert torch.equal(before, after)


def test_errors_name_the_argument_and_the_fix() -> None:
    with pytest.raises(AttentionError, match="no attention module"):
        ns.attention(nn.Sequential(nn.Linear(3, 3)), torch.randn(1, 3))
    enc = _encoder()
    x = torch.randn(1, 4, 16)
    with pytest.raises(UnknownNameError, match="Did you mean 'mean'"):
        ns.attention(enc, x, reduce="meen")
    with pytest.raises(ArgumentError, match="topk"):
        ns.attention(enc, x, reduce={"topk": 0})
    with pytest.raises(ArgumentError, match="unknown key"):
        ns.attention(enc, x, reduce={"row": [0]})
    with pytest.raises(ArgumentError, match="heads"):
        ns.attention(enc, x, reduce=Reduction(heads=(7,)))
    with pytest.raises(ArgumentError, match="query row 9"):
        ns.attention(enc, x, reduce={"rows": [9]})
    maps = ns.attention(enc, x)
    with pytest.raises(KeyError, match="Did you mean"):
        maps["layers.0.self_atn"]
    with pytest.raises(ArgumentError, match="without topk"):
        maps.topk("layers.0.self_attn")


def test_find_sources_kinds_and_repr() -> None:
    enc = _encoder()
    assert [s.kind for s in find_sources(enc)] == ["mha", "mha"]
    maps = ns.attention(enc, torch.randn(1, 4, 16), reduce="cls")
    assert "rows=[0]" in repr(maps)
    html = maps._repr_html_()
    assert "layers.0.self_attn" in html
    assert maps.kinds["layers.0.self_attn"] == "mha"


def test_row_runs_cover_exactly_the_wanted_rows() -> None:
    from netsight.attention._sources import _runs

    assert list(_runs([0, 1, 2, 5], 8, 2)) == [(0, 2), (2, 3), (5, 6)]
    assert list(_runs(None, 5, 2)) == [(0, 2), (2, 4), (4, 5)]
    enc = _encoder()
    x = torch.randn(1, 8, 16)
    full = ns.attention(enc, x)
    some = ns.attention(enc, x, reduce={"rows": [5, 0, 1, 2]}, chunk_rows=2)
    for n in full.names:
        assert (some[n] - full[n][:, :, [0, 1, 2, 5]]).abs().max() <= 1e-6


class _Recorder(nn.Module):
    """Keeps what the wrapped model returned during the last call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.last: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = self.inner(*args, **kwargs)
        self.last = out if isinstance(out, torch.Tensor) else out[0]
        return out


@pytest.mark.parametrize("reduce", [None, "cls", {"topk": 2}])
def test_outputs_during_capture_equal_outputs_without(reduce) -> None:
    timm = pytest.importorskip("timm")
    bert = _Recorder(_bert("eager"))
    ids = torch.randint(0, 60, (2, 6))
    vit = _Recorder(
        timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_heads=2,
            embed_dim=16, num_classes=5,
        ).eval()
    )  # fmt: skip
    img = torch.randn(2, 3, 32, 32)
    enc = _Recorder(_encoder())
    x = torch.randn(2, 7, 16)
    for model, inputs, exact in ((bert, ids, True), (vit, img, False), (enc, x, False)):
        with torch.no_grad():
            model(inputs)
        plain = model.last
        ns.attention(model, inputs, reduce=reduce)
        during = model.last
        assert plain is not None
        assert during is not None
        if exact:  # the same eager kernel runs: bit for bit
            assert torch.equal(plain, during)
        else:  # fused kernels (timm's SDPA, PyTorch's encoder fast path) round differently
            assert (plain - during).abs().max() <= 1e-5


class _Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom inside the second layer")


@pytest.mark.parametrize("reduce", [None, "cls"])
def test_everything_restored_when_the_forward_raises_mid_way(reduce, untouched) -> None:
    enc = _encoder(nested=True)
    enc.layers[1].linear1 = _Raises()
    u = untouched(enc)
    with pytest.raises(RuntimeError, match="boom"):
        ns.attention(enc, torch.randn(1, 5, 16), reduce=reduce, rollout=reduce is not None)
    u.check()
    assert enc.use_nested_tensor
    mha = enc.layers[0].self_attn
    _, w = mha(torch.randn(1, 3, 16), torch.randn(1, 3, 16), torch.randn(1, 3, 16))
    assert w.shape == (1, 3, 3)  # its default (head-averaged weights) is back
