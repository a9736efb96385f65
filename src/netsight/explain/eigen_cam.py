"""Eigen-CAM: the layer's activations projected on their first principal component.

Muhammad & Yeasin (2020), "Eigen-CAM: Class Activation Map using Principal Components", IJCNN, eq. 4-5:
the activations ``A`` of a sample, as a matrix of ``h*w`` positions by ``K`` channels, are centred and
factorised ``A = U S V^T``; the map is the projection ``A v_1`` on the first right singular vector. It
uses no gradient and no target (the target is still resolved and reported).

The sign of a singular vector is arbitrary; it is chosen so that the map correlates positively with the
channel-summed activation (where the layer is active), then the positive part is kept (``relu``).
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def project(a: torch.Tensor) -> torch.Tensor:
    """First-principal-component projection of each sample's activations: ``[N, K, h, w] -> [N, 1, h, w]``."""
    n, _, h, w = a.shape
    m = a.float().flatten(2).transpose(1, 2)  # [N, hw, K]
    m = m - m.mean(dim=1, keepdim=True)
    m = torch.nan_to_num(m)
    _, _, vh = torch.linalg.svd(m, full_matrices=False)  # vh: [N, min(hw, K), K]
    proj = (m @ vh[:, 0, :, None])[..., 0]  # [N, hw]
    ref = a.float().sum(dim=1).flatten(1)
    ref = ref - ref.mean(dim=1, keepdim=True)
    sign = torch.where((proj * ref).sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    out: torch.Tensor = (proj * sign).reshape(n, 1, h, w).to(a.dtype)
    return out


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM ignores gradients: the projection of ``a`` alone."""
    return project(a)


eigen_cam = cam_method(
    "eigen_cam",
    weigh,
    title="Eigen-CAM (Muhammad & Yeasin 2020)",
    summary="projection of the layer's activations on their first principal component",
    paper="Muhammad & Yeasin 2020, Eigen-CAM (IJCNN)",
    gradients=False,
)
