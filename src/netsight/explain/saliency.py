"""Saliency: the gradient of the class score with respect to the input.

Simonyan, Vedaldi, Zisserman (2014), "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR workshop: the map is ``|∂y_c / ∂x|`` (eq. 2 and the text
after it: the magnitude of the derivative; the paper takes the maximum over colour channels for display).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._common import (
    TargetSpec,
    check_inputs,
    input_gradient_pass,
    no_layer,
    prepare_target,
    resolved,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register


@register(
    "saliency",
    kind="gradient",
    passes="1 forward + 1 backward",
    summary="|d score / d input| (or the signed gradient with abs=False)",
    paper="Simonyan, Vedaldi, Zisserman 2014, Deep Inside Convolutional Networks",
)
def saliency(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    abs: bool = True,  # noqa: A002 - the name users know from Captum
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Saliency map ``|∂y_c/∂x|`` (Simonyan et al. 2014); ``abs=False`` keeps the sign."""
    no_layer("saliency", layer)
    x = check_inputs(inputs)
    t = prepare_target(target, x.shape[0], x.device)
    grads, classes, calls, _ = input_gradient_pass(
        model,
        x,
        t,
        max_batch=max_batch,
        progress=progress,
        desc="saliency",
        fwd=forward_args(forward_kwargs, x),
    )
    attr = grads.abs() if abs else grads
    return Explanation(
        attributions=attr,
        method="saliency",
        target=resolved(t, classes),
        meta={"options": {"abs": abs, "max_batch": max_batch}, "passes": calls},
    )
