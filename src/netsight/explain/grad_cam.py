"""Grad-CAM: the layer's activations weighted by the spatial mean of the class score's gradient.

Selvaraju et al. (2017), "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV, eq. 1-2: ``alpha_k = (1/Z) sum_ij dy_c/dA^k_ij`` and
``L = ReLU(sum_k alpha_k A^k)``.
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``Σ_k mean_ij(G^k) A^k``: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    alpha = g.mean(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return (alpha * a).sum(dim=1, keepdim=True)


grad_cam = cam_method(
    "grad_cam",
    weigh,
    title="Grad-CAM (Selvaraju et al. 2017)",
    summary="ReLU(sum_k mean(dy/dA_k) A_k) at a layer, upsampled to the input",
    paper="Selvaraju et al. 2017, Grad-CAM (ICCV)",
)
