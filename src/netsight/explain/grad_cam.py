"""Grad-CAM: the layer's activations weighted by the spatial mean of the class score's gradient.

Selvaraju et al. (2017), "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV, eq. 1-2: ``alpha_k = (1/Z) sum_ij dy_c/dA^k_ij`` and
``L = ReLU(sum_k alpha_k A^k)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._cam import run_cam
from ._common import TargetSpec
from ._explanation import Explanation
from ._registry import register


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``Σ_k mean_ij(G^k) A^k``: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    alpha = g.mean(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return (alpha * a).sum(dim=1, keepdim=True)


@register(
    "grad_cam",
    kind="layer",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k mean(dy/dA_k) A_k) at a layer, upsampled to the input",
    paper="Selvaraju et al. 2017, Grad-CAM (ICCV)",
    needs_layer=True,
)
def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    relu: bool = True,
    max_batch: int | None = None,
    progress: bool = False,
) -> Explanation:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default: the last spatial layer)."""
    return run_cam(
        "grad_cam", model, inputs, target, layer, weigh, relu=relu, max_batch=max_batch, progress=progress
    )
