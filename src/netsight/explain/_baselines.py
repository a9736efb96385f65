"""Reference inputs ("baselines") for path methods: zero, blurred, uniform noise, or a user tensor."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from netsight.errors import ArgumentError

BASELINES = ("zero", "blur", "uniform")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` over the last two dimensions (reflect padding)."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    r = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    pad_h = min(radius, x.shape[-2] - 1)
    pad_w = min(radius, x.shape[-1] - 1)
    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w > 0 else x
    kw = k[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1).expand(c, 1, 1, -1)
    y = F.conv2d(y, kw, groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect") if pad_h > 0 else y
    kh = k[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(y, kh, groups=c)


def make_baseline(
    x: torch.Tensor,
    baseline: Any,
    *,
    blur_sigma: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The baseline for ``x``, same shape and device.

    ``"zero"``: zeros; ``"blur"``: ``x`` blurred with a Gaussian of ``blur_sigma`` pixels (images
    only); ``"uniform"``: uniform noise between each sample's min and max; a number: that constant;
    a tensor broadcastable to ``x``'s shape.
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError as exc:
            raise ArgumentError(
                f"baseline: a tensor of shape {tuple(baseline.shape)} does not broadcast to the inputs' "
                f"shape {tuple(x.shape)}. Pass one of that shape (or one sample's shape)."
            ) from exc
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "blur":
        if x.dim() != 4:
            raise ArgumentError(
                f"baseline: 'blur' needs images [B, C, H, W], got shape {tuple(x.shape)}. Use 'zero', "
                "'uniform' or a tensor."
            )
        return gaussian_blur(x, blur_sigma)
    if baseline == "uniform":
        dims = tuple(range(1, x.dim()))
        lo = x.amin(dim=dims, keepdim=True)
        hi = x.amax(dim=dims, keepdim=True)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return lo + (hi - lo) * u
    raise ArgumentError(
        f"baseline: {baseline!r} is not a baseline. Pass one of {', '.join(repr(b) for b in BASELINES)}, "
        "a number, or a tensor broadcastable to the inputs."
    )
