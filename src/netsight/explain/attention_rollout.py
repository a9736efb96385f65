"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", ACL).

Each layer's attention, averaged over heads, gets the residual connection (``Â = 0.5·A + 0.5·I``, rows
renormalised); the layers are multiplied from the input up, ``R = Â_L · … · Â_1``, and the row of the
explained output token (the class token, or the last real token of a causal model, in each sample) is the
relevance of every input token. Accumulated layer by layer during one forward pass
(:class:`netsight.attention.Rollout`); ``nn.MultiheadAttention`` maps are recomputed in chunks of query
rows, so long inputs stay in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..attention import attention
from ..attention._relevance import build_explanation, default_token, pick_rows, reject_target, token_meta
from ._explanation import Explanation
from ._forward import merged_inputs
from ._registry import register


@register(
    "attention_rollout",
    kind="attention",
    passes="1 forward",
    summary="product over layers of head-averaged attention plus identity; class-token row",
    paper="Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers",
    inputs="transformer",
)
def attention_rollout(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    residual: float = 0.5,
    token: int | None = None,
    chunk_rows: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Rollout relevance of the input tokens for output ``token`` (``[B, T]``; ``[B, 1, H, W]`` for a ViT).

    ``layer``: which attention modules to roll out (a path, glob or list; default all).
    ``token``: the explained output position, the same for every sample (default: each sample's first
    real token, or its last real token for a causal model; real tokens are those of the inputs'
    ``attention_mask``, so a padded batch explains every sample's own token).
    ``forward_kwargs``: added to the inputs of the one forward of the whole batch
    (:func:`netsight.explain._forward.merged_inputs`); an ``attention_mask`` there counts as the inputs'.
    """
    reject_target("attention_rollout", target)
    run = merged_inputs(model, inputs, forward_kwargs, "attention_rollout")
    maps = attention(
        model, run, layers=layer, rollout=True, keep=False, residual=residual, chunk_rows=chunk_rows
    )
    assert maps.rollout is not None
    layers = list(maps.shapes)
    rows = default_token(maps.rollout, token, inputs=run, model=model, layer=layers[-1])  # [B]
    ex: Explanation = build_explanation(
        "attention_rollout",
        model,
        inputs,
        pick_rows(maps.rollout, rows),
        target=None,
        meta={
            "rollout": maps.rollout,
            "token": token_meta(rows),
            "layers": layers,
            "options": {"residual": residual, "token": token, "layer": layer},
            "passes": 1,
        },
    )
    return ex
