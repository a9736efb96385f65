"""Input x gradient: the input times the gradient of the class score.

Shrikumar, Greenside, Shcherbina, Kundaje (2016), "Not Just a Black Box: Learning Important Features
Through Propagating Activation Differences", arXiv:1605.01713: ``x * dy_c/dx`` (the first-order Taylor
term; equal to DeepLIFT with a zero baseline for piecewise-linear networks).
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
    "input_x_gradient",
    kind="gradient",
    passes="1 forward + 1 backward",
    summary="input * d score / d input",
    paper="Shrikumar et al. 2016, Not Just a Black Box (arXiv:1605.01713)",
)
def input_x_gradient(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """``x * dy_c/dx`` (Shrikumar et al. 2016)."""
    no_layer("input_x_gradient", layer)
    x = check_inputs(inputs)
    t = prepare_target(target, x.shape[0], x.device)
    grads, classes, calls, _ = input_gradient_pass(
        model,
        x,
        t,
        max_batch=max_batch,
        progress=progress,
        desc="input_x_gradient",
        fwd=forward_args(forward_kwargs, x),
    )
    return Explanation(
        attributions=x.detach() * grads,
        method="input_x_gradient",
        target=resolved(t, classes),
        meta={"options": {"max_batch": max_batch}, "passes": calls},
    )
