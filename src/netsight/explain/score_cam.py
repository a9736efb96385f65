"""Score-CAM: channel weights from the class score of the input masked by each activation map.

Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu (2020), "Score-CAM: Score-Weighted Visual Explanations
for Convolutional Neural Networks", CVPR workshops, eq. 3-6 and algorithm 1: each activation map
``A^k`` is upsampled to the input size and min-max normalised to a mask ``H^k`` in [0, 1]; its weight is
the softmax over ``k`` of the target score of ``x * H^k`` (the increase of confidence over a baseline
in eq. 3 is a constant shift per sample, which the softmax removes); ``L = ReLU(sum_k w_k A^k)``.

The ``B * K`` masked forwards are batched and chunked to the free memory; masks are made per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._cam import pick_layer
from ._common import (
    TargetSpec,
    batched,
    check_inputs,
    chunk_size,
    forward_scores,
    layer_outputs,
    prepare_target,
    resolved,
    session,
    to_grid,
    upsample,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register


@register(
    "score_cam",
    kind="layer",
    passes="1 forward + K masked forwards per sample (K = channels)",
    summary="ReLU(sum_k softmax_k(score(x * norm(up(A_k)))) A_k)",
    paper="Wang et al. 2020, Score-CAM (CVPR workshops)",
    needs_layer=True,
)
def score_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    relu: bool = True,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Score-CAM (Wang et al. 2020) at ``layer`` (default: the last spatial layer)."""
    x = check_inputs(inputs)
    fwd = forward_args(forward_kwargs, x)
    name = pick_layer(model, x, layer, fwd)
    t = prepare_target(target, x.shape[0], x.device)
    hw = (x.shape[-2], x.shape[-1])
    with session(model, freeze=False) as s:  # forwards without gradients: nothing to freeze
        chunk = chunk_size(model, x, max_batch=max_batch, backward=False, fwd=fwd)
        raw_acts, classes, _ = layer_outputs(s, model, name, x, t, chunk=chunk, fwd=fwd)
        acts = to_grid(raw_acts, hw)  # [B, K, h, w]
        b, k = acts.shape[:2]
        ids = torch.arange(b * k, device=x.device)

        def masked(idc: torch.Tensor) -> torch.Tensor:
            sample, channel = idc // k, idc % k
            m = upsample(acts[sample, channel][:, None].float(), hw)  # [n, 1, H, W]
            lo = m.amin(dim=(2, 3), keepdim=True)
            hi = m.amax(dim=(2, 3), keepdim=True)
            m = (m - lo) / (hi - lo + 1e-8)
            tc = classes[sample] if isinstance(t, torch.Tensor) else t
            return forward_scores(model, x[sample] * m.to(x.dtype), tc, fwd.rows(sample))

        scores = batched(masked, ids, chunk=chunk, progress=progress, desc="score_cam").reshape(b, k)
    weights = torch.softmax(scores.float(), dim=1).to(acts.dtype)  # [B, K]
    raw = (weights[:, :, None, None] * acts).sum(dim=1, keepdim=True)
    if relu:
        raw = torch.relu(raw)
    return Explanation(
        attributions=upsample(raw, hw),
        method="score_cam",
        target=resolved(t, classes),
        layer=name,
        meta={
            "raw": raw,
            "weights": weights,
            "options": {"relu": relu, "max_batch": max_batch},
            "passes": s.calls,
        },
    )
