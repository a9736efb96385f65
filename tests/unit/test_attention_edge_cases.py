"""Edge cases of attention capture and rollout, each against an independent oracle: Hugging Face's
``output_attentions`` on an eager twin of the model, the papers' equations written here, and the
hygiene check (no hook, flag or config left changed, also when netsight raises)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import netsight as ns
from netsight.attention import attention_flow, find_sources, grad_rollout, rollout
from netsight.errors import ArgumentError


def _eager_twin(cls, make_config, model: nn.Module) -> nn.Module:
    """The same weights loaded with ``attn_implementation='eager'`` everywhere, for output_attentions."""
    twin = cls(make_config(attn_implementation="eager")).eval()
    twin.load_state_dict(model.state_dict())
    return twin


def _attn_impls(model: nn.Module) -> list[str]:
    return [m.config._attn_implementation for m in model.modules() if hasattr(m, "config")]


def test_t5_stacks_with_their_own_config_copies_are_captured(untouched) -> None:
    # T5 gives its encoder and decoder deep copies of the config: switching only the root's to eager left
    # the stacks on SDPA, which forms no weights, and the capture failed.
    transformers = pytest.importorskip("transformers")

    def make(**kw):
        return transformers.T5Config(
            vocab_size=60, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, decoder_start_token_id=0,
            **kw,
        )  # fmt: skip

    model = transformers.T5Model(make(attn_implementation="sdpa")).eval()
    ids = torch.randint(3, 60, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": torch.randint(3, 60, (2, 5))}
    with torch.no_grad():
        out = _eager_twin(transformers.T5Model, make, model)(**inputs, output_attentions=True)
    impls = _attn_impls(model)
    u = untouched(model)
    maps = ns.attention(model, inputs)
    u.check()
    assert set(impls) == {"sdpa"}
    assert _attn_impls(model) == impls
    decoder = [a for pair in zip(out.decoder_attentions, out.cross_attentions) for a in pair]
    want = [*out.encoder_attentions, *decoder]
    assert len(maps.names) == len(want) == 6
    for name, a in zip(maps.names, want):
        assert maps[name].shape == a.shape
        assert (maps[name] - a).abs().max() <= 1e-6


def test_recorders_with_a_layer_name_are_found_like_hugging_face_does() -> None:
    # Wav2Vec2 records OutputRecorder(Wav2Vec2Attention, layer_name="encoder"): Hugging Face matches a
    # dotted segment of the module path, netsight matched only a suffix and found no attention at all.
    transformers = pytest.importorskip("transformers")

    def make(**kw):
        return transformers.Wav2Vec2Config(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4,
            num_conv_pos_embedding_groups=2, **kw,
        )  # fmt: skip

    model = transformers.Wav2Vec2Model(make()).eval()
    names = [s.name for s in find_sources(model)]
    assert names == ["encoder.layers.0.attention", "encoder.layers.1.attention"]
    x = torch.randn(2, 400)
    with torch.no_grad():
        want = _eager_twin(transformers.Wav2Vec2Model, make, model)(x, output_attentions=True).attentions
    maps = ns.attention(model, x)
    assert len(maps.names) == len(want) == 2
    for name, a in zip(maps.names, want):
        assert (maps[name] - a).abs().max() <= 1e-6


def test_recorders_given_by_class_name_suffix_are_found() -> None:
    # Some multimodal models record ``OutputRecorder(target_class=None, class_name="self_attn")``.
    transformers = pytest.importorskip("transformers")
    from transformers.utils.output_capturing import OutputRecorder

    class Attn(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = torch.softmax(x @ x.transpose(-1, -2), dim=-1)[:, None]  # [B, 1, T, T]
            return (w[:, 0] @ x), w

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn = Attn()
            self.mlp = Attn()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(self.self_attn(x)[0])[0]

    class Model(nn.Module):
        _can_record_outputs: ClassVar[dict[str, Any]] = {
            "attentions": OutputRecorder(target_class=None, index=1, class_name="self_attn")
        }

        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(Block(), Block())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    assert transformers is not None
    model = Model()
    assert [s.name for s in find_sources(model)] == ["layers.0.self_attn", "layers.1.self_attn"]
    x = torch.randn(2, 5, 3)
    maps = ns.attention(model, x)
    want = model.layers[0].self_attn(x)[1]
    assert (maps["layers.0.self_attn"] - want).abs().max() <= 1e-6


def _bart():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BartConfig(
        vocab_size=60, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
    )  # fmt: skip
    model = transformers.BartModel(cfg).eval()
    inputs = {"input_ids": torch.randint(3, 60, (2, 7)), "decoder_input_ids": torch.randint(3, 60, (2, 5))}
    return model, inputs


@pytest.mark.parametrize("method", ["attention_rollout", "attention_flow", "grad_attention"])
def test_encoder_decoder_explain_says_to_pick_one_stack(method: str, untouched) -> None:
    # Encoder (7 tokens) and decoder (5 tokens) layers chained into one rollout crashed inside torch.bmm.
    model, inputs = _bart()
    options = {"progress": False} if method == "attention_flow" else {}
    if method == "grad_attention":
        options["target"] = lambda out: out.last_hidden_state[:, -1].sum(-1)
    u = untouched(model)
    with pytest.raises(ArgumentError, match=r"layers=.encoder\.\*"):
        ns.explain(model, inputs, method=method, **options)
    u.check()
    assert model.config._attn_implementation == "sdpa"


def test_encoder_decoder_rollout_of_one_stack_equals_the_paper_on_output_attentions() -> None:
    model, inputs = _bart()
    ref = type(model)(model.config.__class__(**{**model.config.to_dict(), "attn_implementation": "eager"}))
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = ref.eval()(**inputs, output_attentions=True)
    for stack, maps, row in (("encoder", out.encoder_attentions, 0), ("decoder", out.decoder_attentions, 4)):
        r = None
        for a in maps:  # Abnar & Zuidema 2020: 0.5 mean_h(A) + 0.5 I, rows renormalised, multiplied upwards
            hat = 0.5 * a.double().mean(1).numpy() + 0.5 * np.eye(a.shape[-1])
            hat = hat / hat.sum(-1, keepdims=True)
            r = hat if r is None else hat @ r
        assert r is not None
        ex = ns.explain(model, inputs, method="attention_rollout", layer=f"{stack}.layers.*.self_attn")
        assert ex.meta["token"] == row  # the decoder is causal: its last token is explained
        np.testing.assert_allclose(ex.attributions.double().numpy(), r[:, row], atol=1e-5)


def test_rollout_flow_and_grad_rollout_refuse_layers_of_different_lengths() -> None:
    a7 = torch.softmax(torch.randn(2, 3, 7, 7), -1)
    a5 = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    cross = torch.softmax(torch.randn(2, 3, 5, 7), -1)
    for bad in ([a7, a5], [a7, a7[:1]]):
        with pytest.raises(ArgumentError, match="rollout, flow and grad_attention chain the layers"):
            rollout(bad)
        with pytest.raises(ArgumentError, match="rollout, flow and grad_attention chain the layers"):
            attention_flow(bad, progress=False)
        with pytest.raises(ArgumentError, match="rollout, flow and grad_attention chain the layers"):
            grad_rollout(bad, [torch.ones_like(a) for a in bad])
    with pytest.raises(ArgumentError, match="cross-attention"):
        grad_rollout([a7, cross], [torch.ones_like(a7), torch.ones_like(cross)])
