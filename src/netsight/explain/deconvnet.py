"""Deconvnet: the input "gradient" with each ReLU's backward replaced by a ReLU of the signal.

Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", ECCV, section 2.1
("Rectification": the reconstructed signal is passed through a ReLU; the forward switch is not used),
as formulated for attribution by Springenberg et al. (2015), fig. 1: ``R_l = (R_{l+1} > 0) * R_{l+1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._common import TargetSpec, no_layer
from ._explanation import Explanation
from ._registry import register
from .guided_backprop import relu_rule_gradients


@register(
    "deconvnet",
    kind="gradient",
    passes="1 forward + 1 backward",
    summary="input signal with ReLU backward max(g, 0)",
    paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
)
def deconvnet(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Deconvnet attributions (Zeiler & Fergus 2014) through every ``nn.ReLU`` of ``model``."""
    no_layer("deconvnet", layer)
    return relu_rule_gradients(
        "deconvnet",
        "deconvnet",
        model,
        inputs,
        target,
        max_batch=max_batch,
        progress=progress,
        forward_kwargs=forward_kwargs,
    )
