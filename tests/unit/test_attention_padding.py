"""Attention explanations of a padded batch explain each sample's own token.

The oracle: each sentence run alone, without padding. Inside a padded batch, a sample's relevance over
its real tokens must be the same as alone, with nothing on its padding. Before the fix one query row was
picked for the whole batch: with right padding a causal model explained position T-1 (padding for the
shorter samples), and with left padding the uniform attention that Hugging Face gives fully masked
padding rows made a GPT-2 look bidirectional, so token 0 (padding again) was explained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import netsight as ns

pytest.importorskip("transformers")

METHODS = ["attention_rollout", "attention_flow", "grad_attention"]
LENGTHS = [6, 4, 2]
VOCAB_ID = 7  # the next-token logit that grad_attention explains on the GPT-2


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=60, n_embd=16, n_layer=2, n_head=4, n_positions=16, attn_implementation="eager",
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return GPT2LMHeadModel(cfg).eval()


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    return BertModel(cfg).eval()


def _sentences() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, 60, (n,), generator=g) for n in LENGTHS]


def _padded(sentences: list[torch.Tensor], side: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A tokenizer-like padded batch (pad id 0), with the positions of each sample's real tokens."""
    t = max(len(s) for s in sentences)
    ids = torch.zeros(len(sentences), t, dtype=torch.long)
    mask = torch.zeros(len(sentences), t, dtype=torch.long)
    for i, s in enumerate(sentences):
        span = slice(t - len(s), t) if side == "left" else slice(0, len(s))
        ids[i, span] = s
        mask[i, span] = 1
    # the positions a generate() call gives left-padded inputs: every real token keeps its unpadded one
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}, mask.bool()


def _options(method: str, causal: bool, at: torch.Tensor) -> dict[str, Any]:
    """Method options; grad_attention's target is a score read at each sample's position ``at`` [B]."""
    options: dict[str, Any] = {"progress": False} if method == "attention_flow" else {}
    if method == "grad_attention":
        options["target"] = _next_token_logit(at) if causal else _class_token_norm(at)
    return options


def _next_token_logit(at: torch.Tensor) -> Callable[[Any], torch.Tensor]:
    """GPT-2: the logit of VOCAB_ID predicted at each sample's last real token, ``[B]``."""
    return lambda out: out.logits[torch.arange(len(at)), at, VOCAB_ID]


def _class_token_norm(at: torch.Tensor) -> Callable[[Any], torch.Tensor]:
    """BERT: the norm of each sample's class-token embedding, ``[B]`` (BERT's pooler reads position 0,
    which is padding in a left-padded batch, so a class logit would not explain the same thing)."""
    return lambda out: out.last_hidden_state[torch.arange(len(at)), at].norm(dim=-1)


def _check_against_alone(model: nn.Module, method: str, side: str, causal: bool) -> None:
    sentences = _sentences()
    inputs, real = _padded(sentences, side)
    last = real.shape[1] - 1 - real.flip(-1).long().argmax(-1)  # each sample's last real position
    first = real.long().argmax(-1)
    at = last if causal else first
    ex = ns.explain(model, inputs, method=method, **_options(method, causal, at))
    rel = ex.attributions
    assert rel.shape == real.shape
    for i, s in enumerate(sentences):
        one = _options(method, causal, torch.tensor([len(s) - 1 if causal else 0]))
        alone = ns.explain(model, {"input_ids": s[None]}, method=method, **one)
        torch.testing.assert_close(rel[i, real[i]], alone.attributions[0], atol=1e-5, rtol=0)
        assert float(rel[i, ~real[i]].abs().sum()) == 0.0  # nothing on the padding
    rows = at.tolist()
    assert ex.meta["token"] == (rows[0] if len(set(rows)) == 1 else rows)  # one int when all agree


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("method", METHODS)
def test_gpt2_padded_batch_explains_each_samples_last_real_token(method: str, side: str, untouched) -> None:
    model = _gpt2()
    u = untouched(model)
    _check_against_alone(model, method, side, causal=True)
    u.check()


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("method", METHODS)
def test_bert_padded_batch_explains_each_samples_class_token(method: str, side: str) -> None:
    # right padding worked before (the class token is position 0 for every sample); it guards the fix.
    # Left padding moves the class token of the shorter samples: position 0 is padding there.
    _check_against_alone(_bert(), method, side, causal=False)


@pytest.mark.parametrize("flag", [None, False], ids=["no-flag", "flag-false"])
@pytest.mark.parametrize("method", METHODS)
def test_causality_read_from_real_rows_when_the_modules_do_not_say(method: str, flag, monkeypatch) -> None:
    # Without ``is_causal=True`` on the attention modules (none, or False as CLIP's causal text attention
    # says), causality is read from the maps, on the rows of real tokens only: the uniform rows of left
    # padding must not make GPT-2 look bidirectional.
    model = _gpt2()
    for m in model.modules():
        if hasattr(m, "is_causal"):
            monkeypatch.setattr(m, "is_causal", flag)
    _check_against_alone(model, method, "left", causal=True)


@pytest.mark.parametrize("method", METHODS)
def test_an_explicit_token_still_wins_over_the_padding(method: str) -> None:
    model = _gpt2()
    inputs, real = _padded(_sentences(), "right")
    options = _options(method, True, torch.full((real.shape[0],), 1))
    ex = ns.explain(model, inputs, method=method, token=1, **options)
    assert ex.meta["token"] == 1
    ex_neg = ns.explain(model, inputs, method=method, token=-5, **options)  # T = 6: position 1 again
    assert ex_neg.meta["token"] == 1
    torch.testing.assert_close(ex.attributions, ex_neg.attributions)
    for i in range(real.shape[0]):  # position 1 is real in every sample: each one as alone
        s = inputs["input_ids"][i, real[i]]
        one = _options(method, True, torch.tensor([1]))
        alone = ns.explain(model, {"input_ids": s[None]}, method=method, token=1, **one)
        torch.testing.assert_close(ex.attributions[i, real[i]], alone.attributions[0], atol=1e-5, rtol=0)
