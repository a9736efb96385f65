"""Grad-CAM++: Grad-CAM with pixel-wise weights from higher-order terms.

Chattopadhay, Sarkar, Howlader, Balasubramanian (2018), "Grad-CAM++: Generalized Gradient-based Visual
Explanations for Deep Convolutional Networks", WACV, eq. 19: with the class score passed through an
exponential, the higher-order derivatives are powers of the first-order gradient ``g``, and
``a_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)``, ``w_k = sum_ij a_ij ReLU(g_ij)``, ``L = ReLU(sum_k w_k A^k)``.
Where ``g = 0`` the coefficient is 0 (the paper's ReLU in eq. 7).
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A^k with the Grad-CAM++ weights: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    coef = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    coef = torch.where(g != 0, coef, torch.zeros_like(coef))
    w = (coef * torch.relu(g)).sum(dim=(2, 3), keepdim=True)  # [N, K, 1, 1]
    return (w * a).sum(dim=1, keepdim=True)


grad_cam_pp = cam_method(
    "grad_cam_pp",
    weigh,
    title="Grad-CAM++ (Chattopadhay et al. 2018)",
    summary="ReLU(sum_k w_k A_k), w_k = sum_ij a_ij ReLU(dy/dA_k_ij), a_ij from 2nd/3rd order terms",
    paper="Chattopadhay et al. 2018, Grad-CAM++ (WACV)",
)
