"""From a token-to-token relevance matrix to an :class:`~netsight.explain.Explanation`.

Shared by the attention explain methods (rollout, flow, gradient-weighted attention): pick, in each
sample, the output token whose relevance is explained (the first real token, a class token, of an
encoder; the last real token of a causal model, so a padded batch explains every sample's own), and for
a ViT lay the patch tokens out on their grid and upsample to the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..capture import unwrap
from ..errors import ArgumentError, TargetError

__all__ = ["build_explanation", "default_token", "pick_rows", "real_tokens", "reject_target", "token_meta"]


def is_causal(square: torch.Tensor, real: torch.Tensor | None = None) -> bool:
    """True when a ``[B, T, T]`` map has nothing above its diagonal (a causal, decoder-only model).

    ``real`` (``[B, T]`` bool): only the rows of real tokens count. Hugging Face gives the rows of fully
    masked padding tokens uniform attention over every key, later ones included.
    """
    if square.shape[-1] <= 1:
        return False
    upper = torch.triu(square, diagonal=1)
    if real is not None:
        upper = upper * real[:, :, None].to(upper.dtype)
    return bool(upper.abs().amax() == 0)


def _module_is_causal(model: nn.Module | None, layer: str | None) -> bool | None:
    """What the attention module at path ``layer`` says (Hugging Face's ``is_causal``), if anything."""
    if model is None or layer is None:
        return None
    path = layer.split("[", 1)[0]  # "h.1.attn[2]": the module's third call
    try:
        module = unwrap(model).get_submodule(path)
    except AttributeError:
        return None
    flag = getattr(module, "is_causal", None)
    return flag if isinstance(flag, bool) else None


def real_tokens(inputs: Any, batch: int, length: int, *, causal: bool | None = None) -> torch.Tensor | None:
    """``[B, T]`` bool, True at real tokens, from the ``attention_mask`` of a tokenizer-like dict.

    ``None`` when ``inputs`` carries no mask of that shape (a plain tensor, an image, ...). With encoder-
    decoder inputs (``decoder_*`` keys) the decoder's own mask goes with a causal stack, and the encoder's
    with a bidirectional one; without knowing which stack, none is used.
    """
    if not isinstance(inputs, Mapping):
        return None
    key = "attention_mask"
    if any(isinstance(k, str) and k.startswith("decoder_") for k in inputs):
        if causal is None:
            return None
        key = "decoder_attention_mask" if causal else "attention_mask"
    mask = inputs.get(key)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (batch, length):
        return None
    return mask != 0


def default_token(
    square: torch.Tensor,
    token: int | None,
    *,
    inputs: Any = None,
    model: nn.Module | None = None,
    layer: str | None = None,
) -> torch.Tensor:
    """The output token explained in each sample, ``[B]`` (long): ``token`` for all if given, else per sample.

    ``square`` is a ``[B, T, T]`` map (an attention map or a rollout). By default a causal model explains
    each sample's last real token and a bidirectional one its first real token (the class token); real
    tokens are those of ``inputs['attention_mask']``, all of them without a mask. A model is causal when
    the attention module at path ``layer`` of ``model`` says so (``is_causal=True``), or when ``square``
    has nothing above its diagonal on the rows of real tokens (padding rows may attend anywhere). An
    explicit ``token`` is a position in the (padded) sequence, the same for every sample.
    """
    b, t = square.shape[0], square.shape[-1]
    if token is not None:
        if isinstance(token, bool) or not isinstance(token, int) or not -t <= token < t:
            raise ArgumentError(f"token: expected a token position in -{t}..{t - 1}, got {token!r}.")
        return torch.full((b,), token % t, dtype=torch.long, device=square.device)
    said = _module_is_causal(model, layer)
    real = real_tokens(inputs, b, t, causal=said)
    if real is not None:
        real = real.to(square.device)
    # A module's is_causal=True is trusted; False is not (CLIP's text attention says False and is given
    # a causal mask), so then the maps decide, on the rows of real tokens.
    causal = said is True or is_causal(square, real)
    if real is None:
        return torch.full((b,), t - 1 if causal else 0, dtype=torch.long, device=square.device)
    if causal:  # the last real position; t - 1 for a sample with no real token
        return (t - 1) - real.flip(-1).long().argmax(dim=-1)
    return real.long().argmax(dim=-1)  # the first real position; 0 for a sample with no real token


def pick_rows(square: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row ``rows[b]`` of each sample's ``[T, T]`` map: ``[B, T, T]`` -> ``[B, T]``."""
    return square[torch.arange(square.shape[0], device=square.device), rows.to(square.device)]


def token_meta(rows: torch.Tensor) -> int | list[int]:
    """The explained position for ``Explanation.meta['token']``: one int when every sample shares it,
    else one per sample (a padded batch)."""
    values = [int(r) for r in rows.tolist()]
    return values[0] if len(set(values)) == 1 else values


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
