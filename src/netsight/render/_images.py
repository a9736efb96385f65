"""Heatmaps, overlays and feature grids as uint8 tensors, computed in torch on the tensor's device."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ArgumentError
from ._colormaps import apply_cmap


def normalize(x: torch.Tensor, dims: tuple[int, ...] | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Min-max scale ``x`` to [0, 1] over ``dims`` (all dimensions when None); constant maps give 0."""
    x = x.detach().float()
    if dims is None:
        lo, hi = x.min(), x.max()
    else:
        lo = x.amin(dim=dims, keepdim=True)
        hi = x.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > eps, (x - lo) / span.clamp_min(eps), torch.zeros_like(x))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] to uint8 0..255 (rounded, clamped)."""
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def heatmap(values: torch.Tensor, cmap: str = "jet", *, normalized: bool = False) -> torch.Tensor:
    """A ``[H, W]`` (or ``[B, H, W]``) map as uint8 RGB ``[..., H, W, 3]`` through a colour map."""
    v = values if normalized else normalize(values, dims=tuple(range(values.dim() - 2, values.dim())))
    return to_uint8(apply_cmap(v, cmap))


def as_images(images: Any) -> torch.Tensor:
    """Images as float RGB in [0, 1], ``[B, H, W, 3]``: accepts ``[B, C, H, W]`` / ``[B, H, W, C]``
    floats (any range: min-max scaled per image) or uint8, with 1 or 3 channels; a single image too."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if x.dim() == 2:
        x = x.unsqueeze(0).unsqueeze(0)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ArgumentError(f"images: expected [B, C, H, W] or [B, H, W, C], got shape {tuple(x.shape)}.")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.permute(0, 2, 3, 1)
    elif x.shape[-1] not in (1, 3):
        raise ArgumentError(
            f"images: cannot find a channel dimension of size 1 or 3 in shape {tuple(x.shape)}."
        )
    xf = x.float() / 255 if x.dtype == torch.uint8 else normalize(x, dims=(1, 2, 3))
    if xf.shape[-1] == 1:
        xf = xf.expand(*xf.shape[:-1], 3)
    return xf


def overlay(images: Any, maps: torch.Tensor, *, cmap: str = "jet", alpha: float = 0.5) -> torch.Tensor:
    """Blend heatmaps over images: uint8 RGB ``[B, H, W, 3]`` on the maps' device.

    ``maps``: ``[B, 1, h, w]``, ``[B, h, w]`` or ``[h, w]``; resized (bilinear) to the images and
    min-max normalised per sample. ``alpha`` is the heatmap's weight.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ArgumentError(f"alpha: expected a weight in [0, 1], got {alpha}.")
    img = as_images(images).to(maps.device)
    m = maps.detach().float()
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None]
    elif m.dim() == 4 and m.shape[1] != 1:
        m = m.sum(dim=1, keepdim=True)
    if m.shape[0] != img.shape[0]:
        if img.shape[0] == 1:
            img = img.expand(m.shape[0], *img.shape[1:])
        else:
            raise ArgumentError(
                f"images: {img.shape[0]} images for {m.shape[0]} maps; pass one image per map."
            )
    h, w = img.shape[1:3]
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    m = normalize(m[:, 0], dims=(1, 2))
    colour = apply_cmap(m, cmap)
    return to_uint8((1 - alpha) * img + alpha * colour)


def feature_grid(
    activation: Any,
    *,
    sample: int = 0,
    k: int | None = None,
    ncols: int | None = None,
    normalize_each: bool = True,
    pad: int = 1,
    cmap: str | None = "viridis",
    scale: int = 1,
) -> torch.Tensor:
    """The channels of a conv activation as one image grid (the founding example's activation maps).

    Args:
        activation: ``[B, C, H, W]`` or ``[C, H, W]`` tensor, or a :class:`~netsight.capture.Record`
            (its activation). Capture it with one forward pass (``ns.capture``); never re-run layers.
        sample: which batch element to draw.
        k: draw only the ``k`` channels with the most energy (mean square), strongest first;
            ``None`` draws all channels in order.
        ncols: grid columns (default: about square).
        normalize_each: scale each channel to its own min..max (else one scale for all).
        pad: pixels between tiles.
        cmap: colour map name, or ``None`` for grey.
        scale: integer upscaling of each tile (nearest).

    Returns:
        uint8 ``[H, W, 3]`` (with ``cmap``) or ``[H, W]`` (grey), on the activation's device.
        :func:`netsight.render.to_png` encodes it.
    """
    act = getattr(activation, "activation", activation)
    if not isinstance(act, torch.Tensor):
        raise ArgumentError(
            f"activation: expected a tensor or a Record holding one, got {type(act).__name__}. Capture "
            "the layer with keep_full=True (the default when reduce is None)."
        )
    a = act.detach()
    if a.dim() == 4:
        if not 0 <= sample < a.shape[0]:
            raise ArgumentError(f"sample: {sample} is outside the batch of {a.shape[0]}.")
        a = a[sample]
    if a.dim() != 3:
        raise ArgumentError(
            f"activation: expected a conv activation [B, C, H, W] or [C, H, W], got shape "
            f"{tuple(act.shape)}. Choose a convolutional layer."
        )
    a = a.float()
    if k is not None:
        if k < 1:
            raise ArgumentError(f"k: expected a positive number of channels, got {k}.")
        energy = a.square().mean(dim=(1, 2))
        idx = torch.topk(energy, min(k, a.shape[0])).indices
        a = a[idx]
    c, h, w = a.shape
    if scale > 1:
        a = F.interpolate(a[None], scale_factor=scale, mode="nearest")[0]
        h, w = h * scale, w * scale
    a = normalize(a, dims=(1, 2)) if normalize_each else normalize(a)
    cols = ncols or math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    grid = torch.zeros(rows * (h + pad) + pad, cols * (w + pad) + pad, device=a.device)
    tile = torch.zeros_like(grid, dtype=torch.bool)
    for i in range(c):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = a[i]
        tile[y : y + h, x : x + w] = True
    if cmap is None:
        return to_uint8(torch.where(tile, grid, torch.ones_like(grid)))  # white gutters
    rgb = apply_cmap(grid, cmap)
    gutter = torch.tensor([0.85, 0.85, 0.85], device=a.device)  # light grey between tiles
    return to_uint8(torch.where(tile[..., None], rgb, gutter))
