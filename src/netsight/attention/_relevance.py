"""From a token-to-token relevance matrix to an :class:`~netsight.explain.Explanation`.

Shared by the attention explain methods (rollout, flow, gradient-weighted attention): pick the output
token whose relevance is explained (the class token of an encoder, the last token of a causal model),
and for a ViT lay the patch tokens out on their grid and upsample to the image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError, TargetError

__all__ = ["build_explanation", "default_token", "reject_target"]


def is_causal(square: torch.Tensor) -> bool:
    """True when a ``[B, T, T]`` map has nothing above its diagonal (a causal, decoder-only model)."""
    return square.shape[-1] > 1 and bool(torch.triu(square, diagonal=1).abs().amax() == 0)


def default_token(square: torch.Tensor, token: int | None) -> int:
    """The output token explained: ``token`` if given, else 0 (class token), or -1 for a causal model."""
    t = square.shape[-1]
    if token is None:
        return t - 1 if is_causal(square) else 0
    if isinstance(token, bool) or not isinstance(token, int) or not -t <= token < t:
        raise ArgumentError(f"token: expected a token position in -{t}..{t - 1}, got {token!r}.")
    return token % t


def reject_target(method: str, target: Any) -> None:
    """Rollout and flow do not depend on a class; a target would be silently ignored, so refuse it."""
    if target is not None:
        raise TargetError(
            f"target: {method} is class-agnostic (it follows attention, not a class score), so "
            f"target={target!r} has no meaning here. Pass target=None, or use method='grad_attention'."
        )


def build_explanation(
    method: str,
    model: nn.Module,
    inputs: Any,
    relevance: torch.Tensor,
    *,
    target: torch.Tensor | None,
    meta: dict[str, Any],
) -> Any:
    """An Explanation of token relevance ``[B, T]``: as it is for text, as ``[B, 1, H, W]`` for a ViT."""
    from ..explain import Explanation
    from .pictures import token_map

    meta = dict(meta)
    meta["tokens"] = relevance
    attributions = relevance
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4 and inputs.is_floating_point():
        raw, up = token_map(relevance, (inputs.shape[-2], inputs.shape[-1]), model)
        meta["raw"] = raw
        attributions = up
    return Explanation(attributions=attributions, method=method, target=target, layer=None, meta=meta)
