"""Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

Selvaraju et al. (2017), "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV, section 3.1 ("Guided Grad-CAM"): the element-wise product of the guided
backpropagation map (Springenberg et al. 2015) and the Grad-CAM map upsampled (bilinearly) to the
input's size, broadcast over the input's channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._common import TargetSpec, check_inputs
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register
from .grad_cam import grad_cam
from .guided_backprop import guided_backprop


@register(
    "guided_grad_cam",
    kind="layer",
    passes="2 forwards + 2 backwards (Grad-CAM, guided backprop)",
    summary="guided backprop * upsampled Grad-CAM, in input space",
    paper="Selvaraju et al. 2017, Grad-CAM (ICCV), section 3.1",
    needs_layer=True,
)
def guided_grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Guided Grad-CAM (Selvaraju et al. 2017) with Grad-CAM at ``layer`` (default: last spatial)."""
    x = check_inputs(inputs)
    fwd = forward_args(forward_kwargs, x)  # split once, for both halves
    cam = grad_cam(model, x, target, layer=layer, max_batch=max_batch, progress=progress, forward_kwargs=fwd)
    # the same classes for both halves (the predicted ones were resolved by Grad-CAM)
    same = cam.target if cam.target is not None else target
    guided = guided_backprop(model, x, same, max_batch=max_batch, progress=progress, forward_kwargs=fwd)
    return Explanation(
        attributions=guided.attributions * cam.attributions,
        method="guided_grad_cam",
        target=cam.target,
        layer=cam.layer,
        meta={
            "raw": cam.meta["raw"],
            "grad_cam": cam.attributions,
            "guided_backprop": guided.attributions,
            "options": {"max_batch": max_batch},
            "passes": cam.meta["passes"] + guided.meta["passes"],
        },
    )
