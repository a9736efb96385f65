"""Occlusion: how much the score drops when a sliding window of the input is replaced by a baseline.

Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", ECCV, section 4.2
("Occlusion Sensitivity"): a grey square is slid over the image and the classifier's output recorded for
each position. As in Captum's ``Occlusion``, each element's attribution is the mean, over the windows that
cover it, of ``score(x) - score(x with the window set to the baseline)``.

Windows are laid out per dimension at ``0, s, 2s, ...`` with ``ceil((n - w) / s) + 1`` positions, the last
one clipped at the border, so every element is covered. All windows of all samples go through the model
as one stream of batched forwards, chunked to the free memory; the window masks are made per chunk on
the input's device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError

from ._common import TargetSpec, check_inputs, no_layer, resolved, session
from ._explanation import Explanation
from ._features import fill_values, masked_forwards, reference_scores, rows_limit, rows_per_chunk, sizing_args
from ._forward import forward_args
from ._registry import register


def _per_dim(
    value: Any, shape: tuple[int, ...], name: str, default: Sequence[int], lead: Sequence[int]
) -> tuple[int, ...]:
    """An int or a tuple over the trailing dimensions of one sample, led by ``lead`` to every dimension."""
    if value is None:
        vals: tuple[int, ...] = tuple(default)
    elif isinstance(value, int) and not isinstance(value, bool):
        vals = (value,) * min(2, len(shape)) if len(shape) >= 3 else (value,)
    elif isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        vals = tuple(value)
    else:
        raise ArgumentError(
            f"{name}: expected an int or a tuple of ints over the sample's trailing dimensions, "
            f"got {value!r}."
        )
    if len(vals) > len(shape):
        raise ArgumentError(
            f"{name}: {vals} has {len(vals)} dimensions but one sample has {len(shape)} "
            f"(shape {shape}); give at most one size per dimension."
        )
    if any(v < 1 for v in vals):
        raise ArgumentError(f"{name}: sizes must be positive, got {vals}.")
    return tuple(lead[: len(shape) - len(vals)]) + vals


def _layout(shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """Window positions per dimension, ``ceil((n - w) / s) + 1``, after checking the sizes."""
    counts = []
    for d, (n, w, s) in enumerate(zip(shape, window, stride, strict=True)):
        if w > n:
            raise ArgumentError(
                f"window: {window} is larger than the sample's shape {shape} in dimension {d}; "
                "use a smaller window."
            )
        if s > w and w < n:
            raise ArgumentError(
                f"stride: {stride} is larger than the window {window} in dimension {d}, which would skip "
                "elements; use a stride no larger than the window."
            )
        counts.append(math.ceil((n - w) / s) + 1)
    return tuple(counts)


def _window_masks(
    ids: torch.Tensor,
    shape: tuple[int, ...],
    window: tuple[int, ...],
    stride: tuple[int, ...],
    counts: tuple[int, ...],
) -> torch.Tensor:
    """Boolean masks ``[m, *S]`` of the windows numbered ``ids`` (last dimension fastest)."""
    mask = torch.ones((ids.shape[0],) + (1,) * len(shape), dtype=torch.bool, device=ids.device)
    rest = ids
    for d in reversed(range(len(shape))):
        pos = rest % counts[d]
        rest = rest // counts[d]
        start = (pos * stride[d])[:, None]
        idx = torch.arange(shape[d], device=ids.device)[None, :]
        inside = (idx >= start) & (idx < start + window[d])  # [m, n_d]
        view = [ids.shape[0]] + [1] * len(shape)
        view[d + 1] = shape[d]
        mask = mask & inside.view(view)
    return mask


@register(
    "occlusion",
    kind="perturbation",
    passes="1 forward + 1 forward per window position, per sample (batched)",
    summary="mean score drop over the sliding windows (set to a baseline) that cover each element",
    paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks (ECCV)",
    inputs="image",
)
def occlusion(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline: float | torch.Tensor = 0.0,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Occlusion sensitivity (Zeiler & Fergus 2014), matching Captum's ``Occlusion``.

    Args:
        window: the window's size over the sample's trailing dimensions (an int means a square over
            the last two of an image); leading dimensions are covered whole, so ``window=16`` on
            ``[B, 3, H, W]`` is Captum's ``sliding_window_shapes=(3, 16, 16)``. Default: a side of
            ``min(H, W) // 8`` for images, one element for ``[B, F]`` / ``[B, T]`` inputs.
        stride: the step between windows, same form (default: half the window, at least 1).
        baseline: what a window is set to: a number (a token id for token inputs) or a tensor
            broadcastable to the inputs.
        max_batch: cap on items per forward (chunks are sized to free memory anyway).
        progress: a progress bar: ``None`` (default) once the work has run two seconds, on a terminal;
            ``True`` at once; ``False`` never.

    ``meta``: ``"windows"`` (positions per dimension), ``"drops"`` ``[windows, B]`` (the score drop of
    each window), ``"passes"`` (model calls).
    """
    no_layer("occlusion", layer)
    x = check_inputs(inputs, floating=False)
    shape = tuple(x.shape[1:])
    if len(shape) >= 3:
        side = max(1, min(shape[-2:]) // 8)
        default_w: tuple[int, ...] = (side, side)
    else:
        default_w = (1,)
    win = _per_dim(window, shape, "window", default_w, shape)  # leading dimensions: covered whole
    strd = _per_dim(stride, shape, "stride", tuple(max(1, w // 2) for w in win), win)
    counts = _layout(shape, win, strd)
    n_windows = math.prod(counts)
    b = x.shape[0]
    base = fill_values(x, baseline, None)[:, 0]  # [B, *S]
    fwd = forward_args(forward_kwargs, x)
    with session(model, freeze=False) as s:  # forwards without gradients: nothing to freeze
        chunk = rows_per_chunk(model, x, max_batch, **sizing_args(fwd))
        ref, t = reference_scores(model, x, target, chunk=chunk, fwd=fwd)

        def build(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            ids = torch.arange(lo, hi, device=x.device)
            win_id, sample = ids // b, ids % b
            mask = _window_masks(win_id, shape, win, strd, counts)
            return torch.where(mask, base[sample], x[sample]), sample

        occluded = masked_forwards(
            model,
            build,
            n_windows * b,
            t,
            chunk=chunk,
            device=x.device,
            progress=progress,
            desc="occlusion",
            grow_to=rows_limit(model, x, max_batch, **sizing_args(fwd)),
            fwd=fwd,
        ).view(n_windows, b)
    drops = ref[None, :] - occluded  # [W, B]
    total = torch.zeros(b, x[0].numel(), dtype=torch.float32, device=x.device)
    cover = torch.zeros(x[0].numel(), dtype=torch.float32, device=x.device)
    step = max(1, chunk)
    for lo in range(0, n_windows, step):  # spread the drops back over the windows, a chunk at a time
        ids = torch.arange(lo, min(lo + step, n_windows), device=x.device)
        m = _window_masks(ids, shape, win, strd, counts).flatten(1).float()  # [w, numel]
        total += drops[lo : lo + step].T @ m
        cover += m.sum(dim=0)
    attr = (total / cover).view(x.shape)
    if x.is_floating_point():
        attr = attr.to(x.dtype)
    classes = t if isinstance(t, torch.Tensor) else None
    return Explanation(
        attributions=attr,
        method="occlusion",
        target=resolved(t, classes),
        meta={
            "windows": counts,
            "drops": drops,
            "options": {"window": win, "stride": strd, "baseline": baseline, "max_batch": max_batch},
            "passes": s.calls,
        },
    )
