"""Guided backpropagation: the input gradient with only positive signals passed back through ReLUs.

Springenberg, Dosovitskiy, Brox, Riedmiller (2015), "Striving for Simplicity: The All Convolutional
Net", ICLR workshop, section 3.4 and fig. 1: at each ReLU the backward signal is
``R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import _relu_rules
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


def relu_rule_gradients(
    method: str,
    rule: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec,
    *,
    max_batch: int | None,
    progress: bool | None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """The input gradient with ``rule`` on every ReLU (shared by guided backprop and deconvnet)."""
    x = check_inputs(inputs)
    t = prepare_target(target, x.shape[0], x.device)
    grads, classes, calls, n = input_gradient_pass(
        model,
        x,
        t,
        max_batch=max_batch,
        progress=progress,
        desc=method,
        prepare=lambda hooks: _relu_rules.install(hooks, model, rule),
        fwd=forward_args(forward_kwargs, x),
    )
    return Explanation(
        attributions=grads,
        method=method,
        target=resolved(t, classes),
        meta={"options": {"max_batch": max_batch}, "passes": calls, "relus": n},
    )


@register(
    "guided_backprop",
    kind="gradient",
    passes="1 forward + 1 backward",
    summary="input gradient with ReLU backward (x > 0) * max(g, 0)",
    paper="Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net",
)
def guided_backprop(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Guided backpropagation (Springenberg et al. 2015) through every ``nn.ReLU`` of ``model``."""
    no_layer("guided_backprop", layer)
    return relu_rule_gradients(
        "guided_backprop",
        "guided",
        model,
        inputs,
        target,
        max_batch=max_batch,
        progress=progress,
        forward_kwargs=forward_kwargs,
    )
