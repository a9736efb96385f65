"""Gradient-weighted attention rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV, eqs. 5-6).

For every attention layer, ``Ā = E_h[(∇A ⊙ A)⁺]``: the positive part of the gradient of the target
score with respect to the attention probabilities times the probabilities, averaged over heads. The
relevance starts as the identity and is rolled out layer by layer, ``R ← R + Ā · R``; the row of the
explained output token is the relevance of the input tokens, for the chosen class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..attention import grad_rollout
from ..attention._capture import call_model, live_attention, select_sources
from ..attention._relevance import build_explanation, default_token, pick_rows, token_meta
from ..capture import Hooks, unwrap
from ..errors import AttentionError
from ._common import resolve_target, score
from ._explanation import Explanation
from ._forward import merged_inputs
from ._registry import register


@register(
    "grad_attention",
    kind="attention",
    passes="1 forward + 1 backward",
    summary="positive part of gradient x attention, head-averaged, rolled out with the identity",
    paper="Chefer, Gur & Wolf 2021, Generic Attention-model Explainability (ICCV)",
    inputs="transformer",
)
def grad_attention(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    token: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Class-specific token relevance ``[B, T]`` (``[B, 1, H, W]`` for a ViT) for output ``token``.

    ``token``: the explained output position, the same for every sample (default: each sample's first
    real token, or its last real token for a causal model, after the inputs' ``attention_mask``).
    ``forward_kwargs``: added to the inputs of the one forward of the whole batch
    (:func:`netsight.explain._forward.merged_inputs`); an ``attention_mask`` there counts as the inputs'.
    """
    run = merged_inputs(model, inputs, forward_kwargs, "grad_attention")
    root = unwrap(model)
    sources = select_sources(root, layer)
    with Hooks(root) as hooks:
        for p in root.parameters():  # the probabilities must be in a graph; restored on exit
            if not p.requires_grad:
                hooks.set_requires_grad(p, True)
        got = live_attention(hooks, root, sources)
        with torch.enable_grad():
            out = call_model(model, run)
            t = resolve_target(out, target)
            s = score(out, t)
            names = list(got)
            if not names:
                raise AttentionError("model: no attention module ran during the forward pass.")
            maps = [got[n][0] for n in names]
            grads = torch.autograd.grad(s.sum(), maps, allow_unused=True)
    g = [torch.zeros_like(a) if d is None else d for a, d in zip(maps, grads)]
    r = grad_rollout([a.detach() for a in maps], g)
    rows = default_token(maps[-1].detach().mean(dim=1), token, inputs=run, model=model, layer=names[-1])
    ex: Explanation = build_explanation(
        "grad_attention",
        model,
        inputs,
        pick_rows(r, rows),
        target=t if isinstance(t, torch.Tensor) else None,
        meta={
            "relevance": r,
            "token": token_meta(rows),
            "layers": names,
            "options": {"token": token, "layer": layer},
            "passes": 2,
        },
    )
    return ex
