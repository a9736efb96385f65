"""XGrad-CAM: channel weights from the activation-normalised gradient.

Fu, Hu, Dong, Wang, Chen, Chen (2020), "Axiom-based Grad-CAM: Towards Accurate Visualization and
Explanation of CNNs", BMVC, eq. 13: ``w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy_c/dA^k_ij``, and
``L = ReLU(sum_k w_k A^k)``.
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
    """sum_k w_k A^k with the XGrad-CAM weights: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    norm = a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)
    w = (norm * g).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return (w * a).sum(dim=1, keepdim=True)


@register(
    "xgrad_cam",
    kind="layer",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k w_k A_k), w_k = sum_ij (A_k_ij / sum A_k) dy/dA_k_ij",
    paper="Fu et al. 2020, Axiom-based Grad-CAM (BMVC)",
    needs_layer=True,
)
def xgrad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    relu: bool = True,
    max_batch: int | None = None,
    progress: bool = False,
) -> Explanation:
    """XGrad-CAM (Fu et al. 2020) at ``layer`` (default: the last spatial layer)."""
    return run_cam(
        "xgrad_cam", model, inputs, target, layer, weigh, relu=relu, max_batch=max_batch, progress=progress
    )
