"""Attention flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", ACL).

The layers form a graph: node ``(l, i)`` is token ``i`` after layer ``l``, and the edge
``(l, i) → (l-1, j)`` has capacity ``Â_l[i, j]`` (head-averaged attention plus the residual identity,
rows renormalised). The relevance of input token ``j`` for output token ``i`` is the maximum flow from
``(L, i)`` to ``(0, j)``, computed exactly (Edmonds-Karp). Its cost grows quickly with the length: meant
for inputs of a few dozen tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..attention import attention
from ..attention import attention_flow as _flow
from ..attention._relevance import build_explanation, default_token, reject_target, token_meta
from ..errors import ArgumentError
from ._explanation import Explanation
from ._forward import merged_inputs
from ._registry import register

#: Above this many graph nodes ((layers + 1) x tokens) the exact max-flow gets slow in pure Python.
MAX_NODES = 4096


@register(
    "attention_flow",
    kind="attention",
    passes="1 forward + T max-flows on the CPU",
    summary="max-flow from the output token to each input token through the attention graph",
    paper="Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers",
    inputs="transformer",
)
def attention_flow(
    model: nn.Module,
    inputs: Any,
    target: Any = None,
    *,
    layer: Any = None,
    residual: float = 0.5,
    token: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Flow relevance of the input tokens for output ``token`` (``[B, T]``; ``[B, 1, H, W]`` for a ViT).

    ``token``: the explained output position, the same for every sample (default: each sample's first
    real token, or its last real token for a causal model, after the inputs' ``attention_mask``).
    ``forward_kwargs``: added to the inputs of the one forward of the whole batch
    (:func:`netsight.explain._forward.merged_inputs`); an ``attention_mask`` there counts as the inputs'.
    """
    reject_target("attention_flow", target)
    run = merged_inputs(model, inputs, forward_kwargs, "attention_flow")
    maps = attention(model, run, layers=layer, reduce="mean")
    layers = [maps[n] for n in maps.names]
    n_nodes = (len(layers) + 1) * layers[0].shape[-1]
    if n_nodes > MAX_NODES:
        raise ArgumentError(
            f"inputs: attention flow over {len(layers)} layers x {layers[0].shape[-1]} tokens is a graph "
            f"of {n_nodes} nodes (limit {MAX_NODES}); use method='attention_rollout' for long inputs."
        )
    rows = default_token(layers[-1][:, 0], token, inputs=run, model=model, layer=maps.names[-1])  # [B]
    flow = _flow(layers, residual=residual, rows=rows[:, None], progress=progress)[:, 0]
    ex: Explanation = build_explanation(
        "attention_flow",
        model,
        inputs,
        flow,
        target=None,
        meta={
            "token": token_meta(rows),
            "layers": maps.names,
            "options": {"residual": residual, "token": token, "layer": layer},
            "passes": 1,
        },
    )
    return ex
