"""Layer-CAM: activations weighted element-wise by the positive gradient.

Jiang, Zhang, Hou, Cheng, Wei (2021), "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 30, eq. 6-7: ``L = ReLU(sum_k ReLU(dy_c/dA^k) * A^k)``, element-wise weights.
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
    """sum_k ReLU(G^k) * A^k: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    return (torch.relu(g) * a).sum(dim=1, keepdim=True)


@register(
    "layer_cam",
    kind="layer",
    passes="1 forward + 1 backward to the layer",
    summary="ReLU(sum_k ReLU(dy/dA_k) * A_k), element-wise",
    paper="Jiang et al. 2021, LayerCAM (IEEE TIP)",
    needs_layer=True,
)
def layer_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    relu: bool = True,
    max_batch: int | None = None,
    progress: bool = False,
) -> Explanation:
    """Layer-CAM (Jiang et al. 2021) at ``layer`` (default: the last spatial layer)."""
    return run_cam(
        "layer_cam", model, inputs, target, layer, weigh, relu=relu, max_batch=max_batch, progress=progress
    )
