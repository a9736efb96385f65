"""HiResCAM: activations times gradients, element-wise, summed over channels.

Draelos & Carin (2020), "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks", arXiv:2011.08891, eq. 4: ``L = sum_k dy_c/dA^k * A^k`` element-wise, no spatial
averaging of the gradient. The paper's map is signed; ``relu=True`` (the default) keeps its positive
part like the other CAMs, ``relu=False`` returns it signed.
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum_k G^k * A^k: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    return (g * a).sum(dim=1, keepdim=True)


hires_cam = cam_method(
    "hires_cam",
    weigh,
    title="HiResCAM (Draelos & Carin 2020)",
    summary="sum_k dy/dA_k * A_k element-wise (ReLU'd for display unless relu=False)",
    paper="Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM (arXiv:2011.08891)",
)
