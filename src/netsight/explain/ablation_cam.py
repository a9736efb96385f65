"""Ablation-CAM: channel weights from the drop of the class score when each channel is zeroed.

Desai & Ramaswamy (2020), "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV, eq. 3-4: with ``y`` the target score and ``y_k`` the score when the
layer's activation map ``A^k`` is set to zero, the weight of channel ``k`` is the relative drop
``w_k = (y - y_k) / y``, and ``L = ReLU(sum_k w_k A^k)``. No gradients.

The ``B * K`` ablated forwards are batched and chunked to the free memory: each row runs the model on its
sample with the layer's output replaced by the sample's activations, one channel zeroed (the layers below
run again, as in the peers: a generic ``nn.Module`` cannot be started at a layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.capture import resolve, unwrap
from netsight.errors import ExplainError

from ._cam import pick_layer
from ._common import (
    TargetSpec,
    batched,
    check_inputs,
    chunk_size,
    forward_scores,
    layer_outputs,
    output_replacer,
    prepare_target,
    resolved,
    session,
    upsample,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register


@register(
    "ablation_cam",
    kind="layer",
    passes="1 forward + K forwards per sample with one channel zeroed (K = channels)",
    summary="ReLU(sum_k (y - y_k) / y A_k), y_k: the score with channel k zeroed",
    paper="Desai & Ramaswamy 2020, Ablation-CAM (WACV)",
    needs_layer=True,
)
def ablation_cam(
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
    """Ablation-CAM (Desai & Ramaswamy 2020) at ``layer`` (default: the last spatial layer)."""
    x = check_inputs(inputs)
    fwd = forward_args(forward_kwargs, x)
    name = pick_layer(model, x, layer, fwd)
    ((_, module),) = resolve(unwrap(model), name, argument="layer")
    t = prepare_target(target, x.shape[0], x.device)
    hw = (x.shape[-2], x.shape[-1])
    with session(model, freeze=False) as s:  # forwards without gradients: nothing to freeze
        chunk = chunk_size(model, x, max_batch=max_batch, backward=False, fwd=fwd)
        acts, classes, base = layer_outputs(s, model, name, x, t, chunk=chunk, fwd=fwd)  # [B, K, h, w]
        if acts.dim() != 4:
            raise ExplainError(
                f"layer: ablation_cam zeroes channels of a [B, C, H, W] output; {name!r} returns shape "
                f"{tuple(acts.shape)}. Pick a convolutional layer, or use grad_cam or score_cam."
            )
        b, k = acts.shape[:2]
        rows: dict[str, torch.Tensor] = {}
        handle = s.hooks.forward(module, output_replacer(rows))
        try:

            def ablated(idc: torch.Tensor) -> torch.Tensor:
                sample, channel = idc // k, idc % k
                a = acts[sample].clone()
                a[torch.arange(a.shape[0], device=a.device), channel] = 0
                rows["new"] = a
                tc = classes[sample] if isinstance(t, torch.Tensor) else t
                return forward_scores(model, x[sample], tc, fwd.rows(sample))

            ids = torch.arange(b * k, device=x.device)
            scores = batched(ablated, ids, chunk=chunk, progress=progress, desc="ablation_cam").reshape(b, k)
        finally:
            handle.remove()
            rows.clear()
    y = base.float()[:, None]
    weights = (y - scores.float()) / y  # [B, K] relative drops
    raw = (weights.to(acts.dtype)[:, :, None, None] * acts).sum(dim=1, keepdim=True)
    if relu:
        raw = torch.relu(raw)
    return Explanation(
        attributions=upsample(raw, hw),
        method="ablation_cam",
        target=resolved(t, classes),
        layer=name,
        meta={
            "raw": raw,
            "weights": weights,
            "scores": base,
            "options": {"relu": relu, "max_batch": max_batch},
            "passes": s.calls,
        },
    )
