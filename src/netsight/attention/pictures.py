"""Pictures of attention as uint8 tensors: the layer-by-head grid and ViT patch heatmaps over images.

Everything is torch on the maps' device (netsight.render); PNG bytes come from
:func:`netsight.render.to_png`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArgumentError
from ._maps import AttentionMaps

__all__ = ["head_grid", "patch_grid", "patch_overlay", "token_map"]


def head_grid(
    maps: AttentionMaps | torch.Tensor,
    *,
    sample: int = 0,
    cmap: str = "viridis",
    cell: int = 64,
    gap: int = 2,
) -> torch.Tensor:
    """A layer-by-head grid of attention heatmaps: uint8 RGB ``[H_img, W_img, 3]``.

    ``maps``: an :class:`AttentionMaps` (its dense maps, one row per layer) or a tensor
    ``[L, H, Q, K]``. Each cell is one head's ``[Q, K]`` map, resized (area) to ``cell`` pixels and
    scaled to [0, 1] on its own.
    """
    from ..render import heatmap

    if isinstance(maps, AttentionMaps):
        if not maps.names:
            raise ArgumentError("maps: no attention module was captured; nothing to draw.")
        layers = [maps[n][sample] for n in maps.names]
    elif isinstance(maps, torch.Tensor) and maps.dim() == 4:
        layers = list(maps)
    else:
        raise ArgumentError(
            f"maps: expected AttentionMaps or a tensor [L, H, Q, K], got {type(maps).__name__}"
            f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else ''}."
        )
    if cell < 1 or gap < 0:
        raise ArgumentError(f"cell, gap: expected cell >= 1 and gap >= 0, got cell={cell}, gap={gap}.")
    n_heads = max(a.shape[0] for a in layers)
    dev = layers[0].device
    out = torch.full(
        (len(layers) * (cell + gap) + gap, n_heads * (cell + gap) + gap, 3),
        255,
        dtype=torch.uint8,
        device=dev,
    )
    for li, a in enumerate(layers):
        cells = F.interpolate(
            a[:, None].float(),
            size=(cell, cell),
            mode="nearest-exact" if max(a.shape[-2:]) <= cell else "area",
        )[:, 0]
        pics = heatmap(cells, cmap)  # [H, cell, cell, 3]
        for hi in range(a.shape[0]):
            y, x = gap + li * (cell + gap), gap + hi * (cell + gap)
            out[y : y + cell, x : x + cell] = pics[hi].to(dev)
    return out


def _patch_size(model: nn.Module) -> tuple[int, int] | None:
    ps: Any = getattr(model, "patch_size", None)  # torchvision VisionTransformer
    if ps is None:
        ps = getattr(getattr(model, "patch_embed", None), "patch_size", None)  # timm
    if ps is None:
        ps = getattr(getattr(model, "config", None), "patch_size", None)  # Hugging Face ViT
    if isinstance(ps, int):
        return (ps, ps)
    if isinstance(ps, (tuple, list)) and len(ps) == 2:
        return (int(ps[0]), int(ps[1]))
    return None


def patch_grid(model: nn.Module | None, image_hw: tuple[int, int], n_tokens: int) -> tuple[int, int, int]:
    """``(prefix, h, w)``: leading class/register tokens, and the patch grid of a ViT's ``n_tokens``."""
    from ..explain._common import _token_grid

    hw = None
    if model is not None:
        ps = _patch_size(model)
        if ps is not None:
            hw = (image_hw[0] // ps[0], image_hw[1] // ps[1])
    prefix = getattr(model, "num_prefix_tokens", None)
    if isinstance(prefix, int) and hw is not None and prefix + hw[0] * hw[1] == n_tokens:
        return prefix, hw[0], hw[1]
    return _token_grid(n_tokens, hw, image_hw)


def token_map(
    relevance: torch.Tensor, image_hw: tuple[int, int], model: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token relevance ``[B, T]`` of a ViT as maps: ``(raw [B, 1, h, w] on the patch grid,
    upsampled [B, 1, H, W] at the image size)``. Class and register tokens are dropped."""
    if relevance.dim() != 2:
        raise ArgumentError(f"relevance: expected [B, T] token relevance, got {tuple(relevance.shape)}.")
    prefix, h, w = patch_grid(model, image_hw, relevance.shape[1])
    raw = relevance[:, prefix:].reshape(relevance.shape[0], 1, h, w)
    up = F.interpolate(raw.float(), size=image_hw, mode="bilinear", align_corners=False)
    return raw, up


def patch_overlay(
    images: torch.Tensor,
    relevance: torch.Tensor,
    model: nn.Module | None = None,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> torch.Tensor:
    """Token relevance ``[B, T]`` of a ViT blended over ``images`` ``[B, C, H, W]``.

    Returns uint8 ``[B, H, W, 3]``.
    """
    from ..render import overlay

    _, up = token_map(relevance, (images.shape[-2], images.shape[-1]), model)
    return overlay(images, up, cmap=cmap, alpha=alpha)
