"""HiResCAM: activations times gradients, element-wise, summed over channels.

Draelos & Carin (2020), "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks", arXiv:2011.08891, eq. 4: ``L = sum_k dy_c/dA^k * A^k`` element-wise, no spatial
averaging of the gradient. The paper's map is signed; ``relu=True`` (the default) keeps its positive
part like the other CAMs, ``relu=False`` returns it signed.
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
    """sum_k G^k * A^k: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    return (g * a).sum(dim=1, keepdim=True)


@register(
    "hires_cam",
    kind="layer",
    passes="1 forward + 1 backward to the layer",
    summary="sum_k dy/dA_k * A_k element-wise (ReLU'd for display unless relu=False)",
    paper="Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM (arXiv:2011.08891)",
    needs_layer=True,
)
def hires_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    relu: bool = True,
    max_batch: int | None = None,
    progress: bool = False,
) -> Explanation:
    """HiResCAM (Draelos & Carin 2020) at ``layer`` (default: the last spatial layer)."""
    return run_cam(
        "hires_cam", model, inputs, target, layer, weigh, relu=relu, max_batch=max_batch, progress=progress
    )
