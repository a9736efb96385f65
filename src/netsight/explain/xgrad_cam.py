"""XGrad-CAM: channel weights from the activation-normalised gradient.

Fu, Hu, Dong, Wang, Chen, Chen (2020), "Axiom-based Grad-CAM: Towards Accurate Visualization and
Explanation of CNNs", BMVC, eq. 13: ``w_k = sum_ij (A^k_ij / sum_ab A^k_ab) dy_c/dA^k_ij``, and
``L = ReLU(sum_k w_k A^k)``.
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A^k with the XGrad-CAM weights: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    norm = a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)
    w = (norm * g).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return (w * a).sum(dim=1, keepdim=True)


xgrad_cam = cam_method(
    "xgrad_cam",
    weigh,
    title="XGrad-CAM (Fu et al. 2020)",
    summary="ReLU(sum_k w_k A_k), w_k = sum_ij (A_k_ij / sum A_k) dy/dA_k_ij",
    paper="Fu et al. 2020, Axiom-based Grad-CAM (BMVC)",
)
